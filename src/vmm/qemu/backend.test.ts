/**
 * The QEMU process wrapper against real QEMU. Boot tests need a pyro kernel
 * (PYRO_TEST_KERNEL, or the build cache) and skip with the reason when there is none;
 * the guest is a tiny busybox rootfs, so no environment build is needed.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { needs } from "../../../test/capabilities.ts";
import { PyroError } from "../../protocol/errors.ts";
import type { BootSpec, VmHandle } from "../types.ts";
import { qemuBackend } from "./index.ts";
import { findTestKernel } from "./testing.ts";

// Real QEMU: boots take seconds under TCG and the KVM probe waits up to 8 s on hosts where
// KVM hangs. Generous limits; nothing here asserts timings.
setDefaultTimeout(120_000);

const kernel = findTestKernel();
const busybox = Bun.which("busybox");

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pyro-qemu-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * Guest init: `pyro.test=echo` echoes the agent port back; `reboot` resets at once; `net`
 * reads what a host TCP server on `pyro.port` sends and prints what it got, then resets.
 */
const INIT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
mode=$(/bin/busybox sed -n 's/.*pyro\\.test=\\([a-z]*\\).*/\\1/p' /proc/cmdline)
echo "pyro-test-init mode=$mode"
if [ "$mode" = reboot ]; then /bin/busybox reboot -f; fi
if [ "$mode" = net ]; then
  port=$(/bin/busybox sed -n 's/.*pyro\\.port=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
  # slirp maps the gateway 10.0.2.2 to the host's loopback. (Static busybox wget segfaults.)
  echo "pyro-test-init got=$(/bin/busybox nc 10.0.2.2 $port </dev/null)"
  /bin/busybox reboot -f
fi
for p in /sys/class/virtio-ports/*; do
  if [ "$(/bin/busybox cat $p/name)" = pyro.agent ]; then port=/dev/$(/bin/busybox basename $p); fi
done
echo "pyro-test-init port=$port"
# One open only (virtio_console refuses a second); reads see EOF until the host connects.
while true; do
  exec 3<>$port
  /bin/busybox cat <&3 >&3
  exec 3<&-
  /bin/busybox usleep 50000
done
`;

let rootfs = "";
function tinyRootfs(): string {
  if (rootfs) return rootfs;
  const tree = join(dir, "tree");
  for (const d of ["bin", "sbin", "dev", "proc", "sys"]) mkdirSync(join(tree, d), { recursive: true });
  copyFileSync(busybox!, join(tree, "bin/busybox"));
  writeFileSync(join(tree, "sbin/pyro-init"), INIT);
  chmodSync(join(tree, "sbin/pyro-init"), 0o755);
  rootfs = join(dir, "rootfs.ext4");
  const mk = Bun.spawnSync(["mkfs.ext4", "-q", "-F", "-d", tree, rootfs, "8M"]);
  if (mk.exitCode !== 0) throw new Error(`mkfs.ext4: ${mk.stderr.toString()}`);
  return rootfs;
}

let n = 0;
function spec(over: Partial<BootSpec> = {}): BootSpec {
  const runDir = join(dir, `run${++n}`);
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  return {
    workspaceId: `t${n}`,
    runDir,
    workspaceDir: runDir,
    environment: {
      name: "test",
      version: "0",
      kernelPath: kernel ?? "/nonexistent/vmlinux",
      rootfsPath: tinyRootfs(),
    },
    vcpuCount: 1,
    memMib: 128,
    network: false,
    consoleLogPath: join(runDir, "console.log"),
    bootTimeoutMs: 30_000,
    ...over,
  };
}

async function waitForConsole(s: BootSpec, pattern: RegExp, vm: VmHandle, ms = 60_000): Promise<string> {
  const deadline = Date.now() + ms;
  let exited = false;
  vm.exited.then(() => (exited = true));
  for (;;) {
    const text = existsSync(s.consoleLogPath) ? readFileSync(s.consoleLogPath, "utf8") : "";
    if (pattern.test(text)) return text;
    if (exited || Date.now() > deadline)
      throw new Error(`console never matched ${pattern}:\n${text.slice(-2000)}`);
    await Bun.sleep(50);
  }
}

function qemuAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

needs("qemu").describe("qemu backend without a guest", () => {
  test("QEMU failing at startup rejects with VMM_FAILED and its own message", async () => {
    const s = spec();
    s.environment = { ...s.environment!, kernelPath: join(dir, "missing-vmlinux") };
    const err = await qemuBackend({ accelerator: "tcg" })
      .boot(s)
      .catch((e) => e);
    expect(err).toBeInstanceOf(PyroError);
    expect(err.code).toBe("VMM_FAILED");
    expect(err.message).toContain("missing-vmlinux");
    expect(existsSync(join(s.runDir, "qmp.sock"))).toBe(false);
  });

  test("no environment is INVALID_INPUT; no binary is VMM_NOT_FOUND", async () => {
    const e1 = await qemuBackend({ accelerator: "tcg" })
      .boot(spec({ environment: null }))
      .catch((e) => e);
    expect(e1.code).toBe("INVALID_INPUT");
    const e2 = await qemuBackend({ accelerator: "tcg", env: { PATH: "/nonexistent" } })
      .boot(spec())
      .catch((e) => e);
    expect(e2.code).toBe("VMM_NOT_FOUND");
  });
});

needs("qemu", "kernel", "busybox", "mkfs.ext4").describe("qemu backend booting a kernel (TCG)", () => {
  test("console shows the pyro kernel, vda is the read-only rootfs, vdb the data disk", async () => {
    const data = join(dir, "data.ext4");
    writeFileSync(data, "");
    Bun.spawnSync(["truncate", "-s", "32M", data]);
    const s = spec({ dataDiskPath: data, extraKernelArgs: ["loglevel=7", "pyro.test=echo"] });
    const vm = await qemuBackend({ accelerator: "tcg" }).boot(s);
    try {
      expect(vm.accelerator).toBe("tcg");
      const text = await waitForConsole(s, /pyro-test-init port=\/dev\/vport/, vm);
      expect(text).toMatch(/Linux version \S+-pyro /);
      expect(text).toContain("Run /sbin/pyro-init as init process");
      expect(text).toMatch(/\[vda\] 16384 512-byte logical blocks/); // the 8 MiB rootfs
      expect(text).toMatch(/\[vdb\] 65536 512-byte logical blocks/); // the 32 MiB data disk
      expect(text).toMatch(
        /EXT4-fs \(vda\): mounted filesystem .*\bro\b|VFS: Mounted root \(ext4 filesystem\) readonly/,
      );
    } finally {
      await vm.stop(5000);
    }
  });

  test("agent channel carries bytes both ways through virtio-serial; stop leaves nothing", async () => {
    const s = spec({ extraKernelArgs: ["pyro.test=echo"] });
    const vm = await qemuBackend({ accelerator: "tcg" }).boot(s);
    const ch = await vm.connect(Date.now() + 10_000);
    await waitForConsole(s, /pyro-test-init port=/, vm);
    const payload = crypto.getRandomValues(new Uint8Array(60_000));
    const got: Uint8Array[] = [];
    let size = 0;
    const echoed = new Promise<void>((resolve) =>
      ch.onData((b) => {
        got.push(b);
        size += b.length;
        if (size >= payload.length) resolve();
      }),
    );
    // QEMU holds bytes in the socket until the guest opens its end, so writing early is fine.
    ch.write(payload);
    await echoed;
    expect(Buffer.concat(got).subarray(0, payload.length).equals(Buffer.from(payload))).toBe(true);
    const closed = new Promise<void>((r) => ch.onClose(() => r()));
    await vm.stop(5000);
    await closed;
    expect(await vm.exited).toBe(0); // QMP quit is a clean exit
    expect(qemuAlive(vm.pid)).toBe(false);
    expect(existsSync(join(s.runDir, "agent.sock"))).toBe(false);
    expect(existsSync(join(s.runDir, "qmp.sock"))).toBe(false);
  });

  test("two VMs share one read-only rootfs at the same time", async () => {
    const a = spec({ extraKernelArgs: ["pyro.test=echo"] });
    const b = spec({ extraKernelArgs: ["pyro.test=echo"] });
    const backend = qemuBackend({ accelerator: "tcg" });
    const [va, vb] = await Promise.all([backend.boot(a), backend.boot(b)]);
    try {
      await Promise.all([
        waitForConsole(a, /pyro-test-init port=/, va),
        waitForConsole(b, /pyro-test-init port=/, vb),
      ]);
    } finally {
      await Promise.all([va.stop(5000), vb.stop(5000)]);
    }
  });

  test("kill leaves no process and no socket", async () => {
    const s = spec({ extraKernelArgs: ["pyro.test=echo"] });
    const vm = await qemuBackend({ accelerator: "tcg" }).boot(s);
    vm.kill();
    expect(await vm.exited).toBeNull();
    expect(qemuAlive(vm.pid)).toBe(false);
    expect(existsSync(join(s.runDir, "agent.sock"))).toBe(false);
    expect(existsSync(join(s.runDir, "qmp.sock"))).toBe(false);
    const err = await vm.connect(Date.now() + 1000).catch((e) => e);
    expect(err.code).toBe("VMM_FAILED");
  });

  test("a guest reset ends QEMU with code 0 (-no-reboot)", async () => {
    const s = spec({ extraKernelArgs: ["pyro.test=reboot"] });
    const vm = await qemuBackend({ accelerator: "tcg" }).boot(s);
    expect(await vm.exited).toBe(0);
    expect(readFileSync(s.consoleLogPath, "utf8")).toContain("pyro-test-init mode=reboot");
  });

  test("network on: kernel IP autoconfig, and the guest reaches a host server through slirp", async () => {
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { open: (sock) => void sock.end("pong-from-host"), data() {} },
    });
    try {
      const s = spec({
        network: true,
        extraKernelArgs: ["loglevel=7", "pyro.test=net", `pyro.port=${server.port}`],
      });
      const vm = await qemuBackend({ accelerator: "tcg" }).boot(s);
      expect(await vm.exited).toBe(0);
      const text = readFileSync(s.consoleLogPath, "utf8");
      expect(text).toMatch(/IP-Config: Complete:[\s\S]*device=eth0.*ipaddr=10\.0\.2\.15.*gw=10\.0\.2\.2/);
      expect(text).toContain("pyro-test-init got=pong-from-host");
    } finally {
      server.stop(true);
    }
  });

  test("network off: the guest has no network device", async () => {
    const s = spec({ extraKernelArgs: ["loglevel=7", "pyro.test=reboot"] });
    const vm = await qemuBackend({ accelerator: "tcg" }).boot(s);
    expect(await vm.exited).toBe(0);
    const text = readFileSync(s.consoleLogPath, "utf8");
    expect(text).not.toContain("eth0");
    expect(text).not.toContain("IP-Config");
  });

  test("QEMU dies with the process that spawned it (parent-death signal)", async () => {
    const s = spec({ extraKernelArgs: ["pyro.test=echo"] });
    const script = `
      import { qemuBackend } from ${JSON.stringify(join(import.meta.dir, "index.ts"))};
      const vm = await qemuBackend({ accelerator: "tcg" }).boot(JSON.parse(process.env.SPEC));
      console.log(vm.pid);
      await Bun.sleep(60_000);`;
    const child = Bun.spawn([process.execPath, "-e", script], {
      env: { ...process.env, SPEC: JSON.stringify(s) },
      stdout: "pipe",
      stderr: "inherit",
    });
    const reader = child.stdout.getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    const pid = Number(out.trim());
    expect(pid).toBeGreaterThan(0);
    expect(qemuAlive(pid)).toBe(true);
    child.kill("SIGKILL"); // a supervisor crash: no cleanup code runs
    await child.exited;
    const deadline = Date.now() + 10_000;
    while (qemuAlive(pid) && Date.now() < deadline) await Bun.sleep(20);
    expect(qemuAlive(pid)).toBe(false);
  });

  test("stale socket files (a QEMU killed elsewhere) do not stop the next boot", async () => {
    const s = spec({ extraKernelArgs: ["pyro.test=echo"] });
    // QEMU cannot bind over an existing path: boot must clear what a SIGKILLed QEMU left.
    writeFileSync(join(s.runDir, "agent.sock"), "");
    writeFileSync(join(s.runDir, "qmp.sock"), "");
    const vm = await qemuBackend({ accelerator: "tcg" }).boot(s);
    await vm.stop(5000);
  });
});
