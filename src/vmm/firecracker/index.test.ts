import { afterEach, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { needs } from "../../../test/capabilities.ts";
import { Connection } from "../../protocol/connection.ts";
import { rejection } from "../../protocol/testing.ts";
import type { BootSpec } from "../types.ts";
import {
  createFirecrackerBackend,
  type FirecrackerVmHandle,
  findFirecracker,
  firecrackerAvailable,
  firecrackerBackend,
  parseConfig,
} from "./index.ts";
import { hostPath, jailerArgv, jailerSettings, jailId, jailLayout } from "./jailer.ts";
import { PartialDrive, SnapshotCreateParams, SnapshotLoadParams, VmState } from "./schema.ts";
import { installStandIn, seenRequests, standInArgv } from "./standin.testing.ts";
import {
  TEMPLATE_DATA_DRIVE_PATH,
  TEMPLATE_DESCRIPTOR,
  TEMPLATE_VSOCK_PATH,
  templateDescriptorJson,
} from "./template.ts";

const dirs: string[] = [];
const handles: FirecrackerVmHandle[] = [];
afterEach(async () => {
  for (const h of handles.splice(0)) {
    h.kill();
    await h.exited;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "pyro-fc-"));
  dirs.push(dir);
  return dir;
}

function script(dir: string, name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

function spec(dir: string, over: Partial<BootSpec> = {}): BootSpec {
  const runDir = join(dir, "run");
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, "vmlinux"), "");
  writeFileSync(join(dir, "rootfs.ext4"), "");
  return {
    workspaceId: "w-test",
    runDir,
    workspaceDir: join(dir, "files"),
    environment: {
      name: "t",
      version: "1",
      kernelPath: join(dir, "vmlinux"),
      rootfsPath: join(dir, "rootfs.ext4"),
    },
    vcpuCount: 1,
    memMib: 128,
    network: false,
    consoleLogPath: join(dir, "logs", "console.log"),
    bootTimeoutMs: 10_000,
    ...over,
  };
}

describe("findFirecracker / firecrackerAvailable", () => {
  test("PYRO_FIRECRACKER_BIN wins when executable; otherwise PATH; otherwise null", () => {
    const dir = tempDir();
    const bin = script(dir, "firecracker", "exit 0");
    const other = script(dir, "fc-custom", "exit 0");
    expect(findFirecracker({ PATH: dir })).toBe(bin);
    expect(findFirecracker({ PATH: "/nonexistent", PYRO_FIRECRACKER_BIN: other })).toBe(other);
    writeFileSync(join(dir, "not-exec"), "");
    expect(findFirecracker({ PATH: dir, PYRO_FIRECRACKER_BIN: join(dir, "not-exec") })).toBeNull();
    expect(findFirecracker({ PATH: "" })).toBeNull();
  });

  test("availability names what is missing", () => {
    const dir = tempDir();
    const none = firecrackerAvailable({ PATH: "" });
    expect(none.ok).toBe(false);
    if (!none.ok) expect(none.reason).toContain("PYRO_FIRECRACKER_BIN");
    script(dir, "firecracker", "exit 0");
    const noKvm = firecrackerAvailable({ PATH: dir }, join(dir, "no-kvm"));
    expect(noKvm).toEqual({ ok: false, reason: `${join(dir, "no-kvm")} is missing or not read/writable` });
    writeFileSync(join(dir, "kvm"), "");
    expect(firecrackerAvailable({ PATH: dir }, join(dir, "kvm"))).toEqual({
      ok: true,
      binary: join(dir, "firecracker"),
    });
  });
});

describe("jailer planning", () => {
  test("settings come from the environment, with the caller's ids by default", () => {
    expect(jailerSettings({}, { uid: 1, gid: 2 })).toBeNull();
    expect(jailerSettings({ PYRO_FIRECRACKER_JAILER: "/usr/bin/jailer" }, { uid: 1, gid: 2 })).toEqual({
      jailerBin: "/usr/bin/jailer",
      uid: 1,
      gid: 2,
    });
    expect(
      jailerSettings(
        { PYRO_FIRECRACKER_JAILER: "/j", PYRO_FIRECRACKER_UID: "123", PYRO_FIRECRACKER_GID: "100" },
        { uid: 0, gid: 0 },
      ),
    ).toEqual({ jailerBin: "/j", uid: 123, gid: 100 });
    expect(() =>
      jailerSettings({ PYRO_FIRECRACKER_JAILER: "/j", PYRO_FIRECRACKER_UID: "nobody" }, { uid: 0, gid: 0 }),
    ).toThrow();
  });

  test("ids, layout and argv follow docs/jailer.md", () => {
    expect(jailId("ws_01.abc")).toBe("ws-01-abc");
    expect(jailId("x".repeat(80))).toHaveLength(64);
    const layout = jailLayout("/pyro/w/run", "/opt/fc/firecracker-v1.14.4", "w1");
    expect(layout.root).toBe("/pyro/w/run/jail/firecracker-v1.14.4/w1/root");
    expect(hostPath(layout, layout.inside.vsock)).toBe(
      "/pyro/w/run/jail/firecracker-v1.14.4/w1/root/vsock.sock",
    );
    expect(
      jailerArgv({ jailerBin: "/j", uid: 5, gid: 6 }, layout, "/opt/fc/firecracker-v1.14.4", [
        "--api-sock",
        "/fc.sock",
      ]),
    ).toEqual([
      "/j",
      "--id",
      "w1",
      "--exec-file",
      "/opt/fc/firecracker-v1.14.4",
      "--uid",
      "5",
      "--gid",
      "6",
      "--chroot-base-dir",
      "/pyro/w/run/jail",
      "--",
      "--api-sock",
      "/fc.sock",
    ]);
  });
});

describe("firecrackerBackend.boot (with stand-in binaries, no KVM needed)", () => {
  test("refuses early with the right codes", async () => {
    const dir = tempDir();
    expect((await rejection(createFirecrackerBackend({ env: { PATH: "" } }).boot(spec(dir)))).code).toBe(
      "VMM_NOT_FOUND",
    );
    script(dir, "firecracker", "exit 0");
    const noKvm = createFirecrackerBackend({ env: { PATH: dir }, kvmPath: join(dir, "no-kvm") });
    expect((await rejection(noKvm.boot(spec(dir)))).code).toBe("KVM_UNAVAILABLE");
    writeFileSync(join(dir, "kvm"), "");
    const be = createFirecrackerBackend({ env: { PATH: dir }, kvmPath: join(dir, "kvm") });
    expect((await rejection(be.boot(spec(dir, { network: true })))).code).toBe("BACKEND_UNAVAILABLE");
    expect((await rejection(be.boot(spec(dir, { environment: null })))).code).toBe("INVALID_INPUT");
    // a template clone without its data disk (and without the template's descriptor)
    const qemuTemplate = {
      memoryFile: { path: join(dir, "ram"), shared: false },
      restoreFrom: join(dir, "state"),
    };
    expect((await rejection(be.boot(spec(dir, qemuTemplate)))).code).toBe("INVALID_INPUT");
  });

  test("writes a valid config, passes it by argv, logs to the console file, reports the exit", async () => {
    const dir = tempDir();
    const argvFile = join(dir, "argv.txt");
    script(
      dir,
      "firecracker",
      `printf '%s\\n' "$@" > '${argvFile}'\necho "fake firecracker: config rejected" >&2\nexit 3`,
    );
    writeFileSync(join(dir, "kvm"), "");
    const s = spec(dir, { dataDiskPath: join(dir, "disk.ext4") });
    writeFileSync(s.dataDiskPath!, "");
    const be = createFirecrackerBackend({ env: { PATH: `${dir}:/usr/bin:/bin` }, kvmPath: join(dir, "kvm") });
    expect(be.name).toBe("firecracker");
    const vm = (await be.boot(s)) as FirecrackerVmHandle;
    handles.push(vm);
    expect(vm.backend).toBe("firecracker");
    expect(vm.accelerator).toBe("kvm");
    expect(await vm.exited).toBe(3);
    expect(readFileSync(argvFile, "utf8").trim().split("\n")).toEqual([
      "--api-sock",
      join(s.runDir, "fc.sock"),
      "--config-file",
      join(s.runDir, "fc.json"),
    ]);
    const config = parseConfig(JSON.parse(readFileSync(vm.configPath, "utf8")));
    expect(config.vsock?.uds_path).toBe(join(s.runDir, "vsock.sock"));
    expect(config.drives.map((d) => d.path_on_host)).toEqual([s.environment!.rootfsPath, s.dataDiskPath!]);
    // A VMM that is gone fails connect() at once, with its last words attached.
    const err = await rejection(vm.connect(Date.now() + 60_000));
    expect(err.code).toBe("VMM_FAILED");
    expect(String(err.details?.consoleTail)).toContain("config rejected");
  });

  test("stale sockets are removed; stop() without an API socket falls back to SIGKILL", async () => {
    const dir = tempDir();
    script(dir, "firecracker", "exec sleep 1000");
    writeFileSync(join(dir, "kvm"), "");
    const s = spec(dir);
    writeFileSync(join(s.runDir, "vsock.sock"), "stale");
    writeFileSync(join(s.runDir, "fc.sock"), "stale");
    const be = createFirecrackerBackend({ env: { PATH: `${dir}:/usr/bin:/bin` }, kvmPath: join(dir, "kvm") });
    const vm = (await be.boot(s)) as FirecrackerVmHandle;
    handles.push(vm);
    expect(existsSync(vm.vsockPath)).toBe(false);
    expect(existsSync(vm.apiSocketPath)).toBe(false);
    // Nothing ever listens on vsock: before a first connect that is a boot timeout.
    expect((await rejection(vm.connect(Date.now() + 200))).code).toBe("GUEST_BOOT_TIMEOUT");
    await vm.stop(200);
    expect(await vm.exited).toBeNull(); // killed by a signal
  });
});

/** One round trip through the agent channel (the stand-in's "guest" echoes). */
async function echoOver(vm: FirecrackerVmHandle, text: string): Promise<string> {
  const ch = await vm.connect(Date.now() + 10_000);
  const got = new Promise<string>((resolve) => {
    let s = "";
    ch.onData((b) => {
      s += new TextDecoder().decode(b);
      if (s.includes(text)) resolve(s);
    });
  });
  ch.write(new TextEncoder().encode(text));
  const out = await Promise.race([got, Bun.sleep(10_000).then(() => "no echo")]);
  ch.close();
  return out;
}

describe("pause/resume through the API (stand-in firecracker answering the API socket)", () => {
  function setup() {
    const dir = tempDir();
    installStandIn(dir);
    writeFileSync(join(dir, "kvm"), "");
    const s = spec(dir, { dataDiskPath: join(dir, "disk.ext4") });
    writeFileSync(s.dataDiskPath!, "");
    const be = createFirecrackerBackend({ env: { PATH: `${dir}:/usr/bin:/bin` }, kvmPath: join(dir, "kvm") });
    const paused = join(dir, "paused");
    mkdirSync(paused);
    return { dir, s, be, statePath: join(paused, "memory") };
  }

  test("saveState pauses, snapshots both files and hashes them; a restore loads them with resume_vm and the agent answers again", async () => {
    const { dir, s, be, statePath } = setup();
    const vm1 = (await be.boot(s)) as FirecrackerVmHandle;
    handles.push(vm1);
    expect(await echoOver(vm1, "before-pause")).toContain("before-pause");
    const saved = await vm1.saveState!(statePath, Date.now() + 30_000);
    // state file first, then the memory file beside it (snapshot.ts; paused-state.ts checks the same order)
    const both = Buffer.concat([readFileSync(statePath), readFileSync(`${statePath}.mem`)]);
    expect(saved).toEqual({
      bytes: both.length,
      sha256: new Bun.CryptoHasher("sha256").update(both).digest("hex"),
    });
    expect((await vm1.api.describeInstance()).state).toBe("Paused");
    // stop() of a paused VM (what the supervisor does after a pause) kills it at once, no Ctrl-Alt-Del
    await vm1.stop(60_000);
    expect(await vm1.exited).toBeNull();
    expect(seenRequests(dir)).toEqual([
      { method: "GET", path: "/" }, // the API socket is up
      { method: "PATCH", path: "/vm", body: { state: "Paused" } },
      {
        method: "PUT",
        path: "/snapshot/create",
        body: { snapshot_type: "Full", snapshot_path: statePath, mem_file_path: `${statePath}.mem` },
      },
      { method: "GET", path: "/" }, // the test's describeInstance
    ]);
    rmSync(join(dir, "requests.jsonl"));

    const vm2 = (await be.boot({ ...s, restoreFrom: statePath })) as FirecrackerVmHandle;
    handles.push(vm2);
    // API only: a snapshot load is refused by a process that was given a config
    expect(standInArgv(dir)).toEqual(["--api-sock", join(s.runDir, "fc.sock")]);
    expect(existsSync(join(s.runDir, "fc.json"))).toBe(false);
    expect(seenRequests(dir)).toEqual([
      { method: "GET", path: "/" },
      {
        method: "PUT",
        path: "/snapshot/load",
        body: {
          snapshot_path: statePath,
          mem_backend: { backend_type: "File", backend_path: `${statePath}.mem` },
          resume_vm: true,
        },
      },
    ]);
    expect((await vm2.api.describeInstance()).state).toBe("Running");
    // a fresh vsock connection after the restore (old ones do not survive a snapshot)
    expect(await echoOver(vm2, "after-resume")).toContain("after-resume");
    await vm2.stop(5000);
    expect(await vm2.exited).toBe(0);
    expect(seenRequests(dir).at(-1)).toEqual({
      method: "PUT",
      path: "/actions",
      body: { action_type: "SendCtrlAltDel" },
    });
    expect(existsSync(vm2.apiSocketPath)).toBe(false);
    expect(existsSync(vm2.vsockPath)).toBe(false);
  });

  test("a failing load kills firecracker and is VMM_FAILED with the fault (resume then boots cold); the cold boot uses the config again", async () => {
    const { dir, s, be, statePath } = setup();
    const vm1 = (await be.boot(s)) as FirecrackerVmHandle;
    handles.push(vm1);
    await vm1.saveState!(statePath, Date.now() + 30_000);
    vm1.kill();
    await vm1.exited;
    writeFileSync(
      join(dir, "fail-load"),
      "Load snapshot error: Cannot restore devices: tap pytdeadbeef not found",
    );
    const err = await rejection(be.boot({ ...s, restoreFrom: statePath }));
    expect(err.code).toBe("VMM_FAILED");
    expect(err.message).toContain("resume failed");
    expect(err.message).toContain("tap pytdeadbeef not found");
    expect(err.details?.faultMessage).toContain("Cannot restore devices");
    // nothing left running or bound
    expect(existsSync(join(s.runDir, "fc.sock"))).toBe(false);
    expect(
      Bun.spawnSync(["pgrep", "-f", join(dir, "firecracker-standin.ts")])
        .stdout.toString()
        .trim(),
    ).toBe("");
    // src/manager/pause.ts then boots cold: a plain boot with the config file
    rmSync(join(dir, "fail-load"));
    const vm3 = (await be.boot(s)) as FirecrackerVmHandle;
    handles.push(vm3);
    expect(await echoOver(vm3, "cold")).toContain("cold"); // (the stand-in has written its argv by now)
    expect(standInArgv(dir)).toEqual([
      "--api-sock",
      join(s.runDir, "fc.sock"),
      "--config-file",
      join(s.runDir, "fc.json"),
    ]);
  });

  test("a restore whose files are missing fails at the load; saveState after exit and ignoreShared are refused", async () => {
    const { s, be, statePath } = setup();
    const err = await rejection(be.boot({ ...s, restoreFrom: statePath }));
    expect(err.code).toBe("VMM_FAILED");
    expect(err.message).toContain("snapshot file missing");
    const vm = (await be.boot(s)) as FirecrackerVmHandle;
    handles.push(vm);
    expect((await rejection(vm.saveState!(statePath, Date.now() + 5000, { ignoreShared: true }))).code).toBe(
      "INVALID_INPUT",
    );
    vm.kill();
    await vm.exited;
    expect((await rejection(vm.saveState!(statePath, Date.now() + 5000))).code).toBe("VMM_FAILED");
  });
});

describe("VM templates through the stand-in (template boot, snapshot, clones; docs/firecracker.md)", () => {
  const sha = (p: string) => new Bun.CryptoHasher("sha256").update(readFileSync(p)).digest("hex");

  /** A template booted, saved and described the way src/manager/templates-firecracker.ts does. */
  async function makeTemplate() {
    const dir = tempDir();
    installStandIn(dir);
    writeFileSync(join(dir, "kvm"), "");
    const be = createFirecrackerBackend({ env: { PATH: `${dir}:/usr/bin:/bin` }, kvmPath: join(dir, "kvm") });
    const tpl = join(dir, "tpl");
    mkdirSync(tpl);
    const placeholder = join(dir, "placeholder.ext4");
    writeFileSync(placeholder, "");
    const s = spec(dir, { dataDiskPath: placeholder, memoryFile: { path: join(tpl, "mem"), shared: true } });
    const vm = (await be.boot(s)) as FirecrackerVmHandle;
    handles.push(vm);
    // the per-clone files are named relative to Firecracker's cwd (the run dir)
    const config = parseConfig(JSON.parse(readFileSync(vm.configPath, "utf8")));
    expect(config.vsock?.uds_path).toBe(TEMPLATE_VSOCK_PATH);
    expect(config.drives.find((d) => d.drive_id === "data")?.path_on_host).toBe(TEMPLATE_DATA_DRIVE_PATH);
    expect(config.drives.find((d) => d.drive_id === "rootfs")?.path_on_host).toBe(s.environment!.rootfsPath);
    expect(readlinkSync(join(s.runDir, TEMPLATE_DATA_DRIVE_PATH))).toBe(placeholder);
    expect(await echoOver(vm, "template-up")).toContain("template-up");
    const saved = await vm.saveState!(join(tpl, "state"), Date.now() + 30_000, { ignoreShared: true });
    // the memory goes where the template boot said (spec.memoryFile), not beside the state
    expect(existsSync(join(tpl, "mem"))).toBe(true);
    expect(existsSync(join(tpl, "state.mem"))).toBe(false);
    expect(saved.bytes).toBe(readFileSync(join(tpl, "state")).length + readFileSync(join(tpl, "mem")).length);
    const create = seenRequests(dir).find((r) => r.path === "/snapshot/create");
    expect(create?.body).toEqual({
      snapshot_type: "Full",
      snapshot_path: join(tpl, "state"),
      mem_file_path: join(tpl, "mem"),
    });
    expect(v.safeParse(SnapshotCreateParams, create?.body).success).toBe(true);
    writeFileSync(
      join(tpl, TEMPLATE_DESCRIPTOR),
      templateDescriptorJson({ firecracker_version: "1.14.4", config }),
    );
    vm.kill();
    await vm.exited;
    rmSync(join(dir, "requests.jsonl"));
    return { dir, be, tpl, state: join(tpl, "state"), mem: join(tpl, "mem") };
  }

  function cloneSpec(dir: string, name: string, t: { state: string; mem: string }): BootSpec {
    const base = join(dir, name);
    mkdirSync(base);
    const s = spec(base, {
      workspaceId: name,
      dataDiskPath: join(base, "data.ext4"),
      memoryFile: { path: t.mem, shared: false },
      restoreFrom: t.state,
    });
    writeFileSync(s.dataDiskPath!, name);
    return s;
  }

  test("two clones each load the snapshot paused with the memory mapped private, get their own data disk, then resume; the template is never written", async () => {
    const t = await makeTemplate();
    const before = [sha(t.state), sha(t.mem)];
    const sa = cloneSpec(t.dir, "a", t);
    const a = (await t.be.boot(sa)) as FirecrackerVmHandle;
    handles.push(a);
    expect(standInArgv(t.dir)).toEqual(["--api-sock", join(sa.runDir, "fc.sock")]); // bare: no config
    expect(existsSync(join(sa.runDir, "fc.json"))).toBe(false);
    const calls = seenRequests(t.dir);
    expect(calls).toEqual([
      { method: "GET", path: "/" }, // up, and the release that saved the template
      {
        method: "PUT",
        path: "/snapshot/load",
        body: {
          snapshot_path: t.state,
          mem_backend: { backend_type: "File", backend_path: t.mem },
          resume_vm: false,
        },
      },
      { method: "PATCH", path: "/drives/data", body: { drive_id: "data", path_on_host: sa.dataDiskPath } },
      { method: "PATCH", path: "/vm", body: { state: "Resumed" } },
    ]);
    // each body as the transcribed swagger has it
    expect(v.safeParse(SnapshotLoadParams, calls[1]!.body).success).toBe(true);
    expect(v.safeParse(PartialDrive, calls[2]!.body).success).toBe(true);
    expect(v.safeParse(VmState, calls[3]!.body).success).toBe(true);
    rmSync(join(t.dir, "requests.jsonl"));

    const sb = cloneSpec(t.dir, "b", t);
    const b = (await t.be.boot(sb)) as FirecrackerVmHandle;
    handles.push(b);
    expect(seenRequests(t.dir)[2]).toEqual({
      method: "PATCH",
      path: "/drives/data",
      body: { drive_id: "data", path_on_host: sb.dataDiskPath },
    });
    // both run at once, each with its own vsock socket and its own disk behind the relative drive path
    expect(a.vsockPath).toBe(join(sa.runDir, TEMPLATE_VSOCK_PATH));
    expect(b.vsockPath).toBe(join(sb.runDir, TEMPLATE_VSOCK_PATH));
    expect(await echoOver(a, "clone-a")).toContain("clone-a");
    expect(await echoOver(b, "clone-b")).toContain("clone-b");
    expect(readlinkSync(join(sa.runDir, TEMPLATE_DATA_DRIVE_PATH))).toBe(sa.dataDiskPath!);
    expect(readlinkSync(join(sb.runDir, TEMPLATE_DATA_DRIVE_PATH))).toBe(sb.dataDiskPath!);
    expect((await a.api.describeInstance()).state).toBe("Running");
    // a clone pauses like any workspace: a full snapshot beside its own state path
    const paused = join(t.dir, "a", "memory");
    await a.saveState!(paused, Date.now() + 30_000);
    expect(existsSync(`${paused}.mem`)).toBe(true);
    for (const vm of [a, b]) {
      vm.kill();
      await vm.exited;
    }
    expect([sha(t.state), sha(t.mem)]).toEqual(before);
  });

  test("a template saved by another firecracker release, or with a refused load, is VMM_FAILED with nothing left running; bad specs are INVALID_INPUT", async () => {
    const t = await makeTemplate();
    const d = JSON.parse(readFileSync(join(t.tpl, TEMPLATE_DESCRIPTOR), "utf8"));
    writeFileSync(join(t.tpl, TEMPLATE_DESCRIPTOR), JSON.stringify({ ...d, firecracker_version: "1.13.1" }));
    const sa = cloneSpec(t.dir, "a", t);
    const err = await rejection(t.be.boot(sa));
    expect(err.code).toBe("VMM_FAILED");
    expect(err.message).toContain("saved by firecracker 1.13.1, this is 1.14.4");
    expect(seenRequests(t.dir).map((r) => r.path)).toEqual(["/"]); // never loaded
    const standIns = () =>
      Bun.spawnSync(["pgrep", "-f", join(t.dir, "firecracker-standin.ts")])
        .stdout.toString()
        .trim();
    expect(standIns()).toBe("");

    writeFileSync(join(t.tpl, TEMPLATE_DESCRIPTOR), JSON.stringify(d));
    writeFileSync(join(t.dir, "fail-load"), "Load snapshot error: memory file truncated");
    const err2 = await rejection(t.be.boot(cloneSpec(t.dir, "b", t)));
    expect(err2.code).toBe("VMM_FAILED");
    expect(err2.message).toContain("memory file truncated");
    expect(standIns()).toBe("");

    // a clone needs its data disk and the template's descriptor; a template boot is never jailed
    const noDisk = { ...cloneSpec(t.dir, "c", t), dataDiskPath: undefined };
    expect((await rejection(t.be.boot(noDisk))).code).toBe("INVALID_INPUT");
    const noDescriptor = cloneSpec(t.dir, "e", { state: join(t.dir, "nowhere", "state"), mem: t.mem });
    expect((await rejection(t.be.boot(noDescriptor))).message).toContain(TEMPLATE_DESCRIPTOR);
    const jailed = createFirecrackerBackend({
      env: { PATH: `${t.dir}:/usr/bin:/bin`, PYRO_FIRECRACKER_JAILER: "/usr/bin/jailer" },
      kvmPath: join(t.dir, "kvm"),
    });
    const tplBoot = spec(join(t.dir, "a"), { memoryFile: { path: join(t.dir, "m2"), shared: true } });
    expect((await rejection(jailed.boot(tplBoot))).message).toContain("jailer");
    expect(standIns()).toBe("");
  });
});

// ---- end to end: a real Firecracker, a real kernel and rootfs ----

needs("kvm", "firecracker").test("boots a real guest and reaches its agent over vsock", async () => {
  const dir = tempDir();
  const runDir = join(dir, "run");
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  let dataDiskPath: string | undefined;
  const mkfs = Bun.which("mkfs.ext4");
  if (mkfs) {
    dataDiskPath = join(dir, "disk.ext4");
    writeFileSync(dataDiskPath, "");
    Bun.spawnSync(["truncate", "-s", "256M", dataDiskPath]);
    expect(Bun.spawnSync([mkfs, "-q", "-F", dataDiskPath]).exitCode).toBe(0);
  }
  const s: BootSpec = {
    workspaceId: "fc-e2e",
    runDir,
    workspaceDir: join(dir, "files"),
    dataDiskPath,
    environment: {
      name: "test",
      version: "0",
      kernelPath: process.env.PYRO_TEST_KERNEL!,
      rootfsPath: process.env.PYRO_TEST_ROOTFS!,
    },
    vcpuCount: 1,
    memMib: 512,
    network: false,
    consoleLogPath: join(dir, "console.log"),
    bootTimeoutMs: 60_000,
  };
  const vm = (await firecrackerBackend.boot(s)) as FirecrackerVmHandle;
  handles.push(vm);
  const channel = await vm.connect(Date.now() + s.bootTimeoutMs);
  const conn = new Connection(channel);
  expect(await conn.call({ op: "ping" })).toEqual({ pong: true });
  expect((await vm.api.describeInstance()).state).toBe("Running");
  conn.close();
  await vm.stop(30_000);
  expect(existsSync(vm.apiSocketPath)).toBe(false);
});
