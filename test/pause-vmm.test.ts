/**
 * The QEMU backend's save/restore (src/vmm/qemu/migrate.ts) against real QEMU with a tiny
 * busybox guest (no environment build): a counter the guest prints on its console keeps
 * counting after the machine is saved, killed and restored into a new QEMU process (the
 * console never shows a second boot), and the agent port echoes bytes after the restore.
 * Also the pure parts: `-incoming defer` only for a restore, and the paused-state checks
 * (shape, size, hash; a half-written state is never used).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
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
import {
  beginPausedState,
  commitPausedState,
  discardPausedState,
  pausedDir,
  verifyPausedState,
} from "../src/manager/paused-state.ts";
import type { WorkspaceRecord } from "../src/manager/record.ts";
import { buildQemuArgv } from "../src/vmm/qemu/argv.ts";
import { qemuBackend } from "../src/vmm/qemu/index.ts";
import { findTestKernel } from "../src/vmm/qemu/testing.ts";
import type { BootSpec, VmHandle } from "../src/vmm/types.ts";
import { needs } from "./capabilities.ts";

setDefaultTimeout(180_000);

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pyro-pause-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const INIT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "pause-test-init booted"
( i=0; while true; do i=$((i+1)); echo "tick $i" >/dev/console; /bin/busybox usleep 100000; done ) &
for p in /sys/class/virtio-ports/*; do
  if [ "$(/bin/busybox cat $p/name)" = pyro.agent ]; then port=/dev/$(/bin/busybox basename $p); fi
done
while true; do
  exec 3<>$port
  /bin/busybox cat <&3 >&3
  exec 3<&-
  /bin/busybox usleep 50000
done
`;

function rootfs(): string {
  const tree = join(dir, "tree");
  for (const d of ["bin", "sbin", "dev", "proc", "sys"]) mkdirSync(join(tree, d), { recursive: true });
  copyFileSync(Bun.which("busybox") as string, join(tree, "bin/busybox"));
  writeFileSync(join(tree, "sbin/pyro-init"), INIT);
  chmodSync(join(tree, "sbin/pyro-init"), 0o755);
  const out = join(dir, "rootfs.ext4");
  const mk = Bun.spawnSync(["mkfs.ext4", "-q", "-F", "-d", tree, out, "8M"]);
  if (mk.exitCode !== 0) throw new Error(`mkfs.ext4: ${mk.stderr.toString()}`);
  return out;
}

function spec(runDir: string, rootfsPath: string, over: Partial<BootSpec> = {}): BootSpec {
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  return {
    workspaceId: "pausetest",
    runDir,
    workspaceDir: runDir,
    environment: { name: "t", version: "0", kernelPath: findTestKernel() ?? "/none", rootfsPath },
    vcpuCount: 1,
    memMib: 128,
    network: false,
    consoleLogPath: join(runDir, "console.log"),
    bootTimeoutMs: 60_000,
    ...over,
  };
}

const ticks = (text: string) => [...text.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));

async function waitConsole(s: BootSpec, ok: (text: string) => boolean, vm: VmHandle): Promise<string> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const text = existsSync(s.consoleLogPath) ? readFileSync(s.consoleLogPath, "utf8") : "";
    if (ok(text)) return text;
    if (Date.now() > deadline) throw new Error(`console never matched:\n${text.slice(-2000)}`);
    if (!(await Promise.race([vm.exited.then(() => false), Bun.sleep(100).then(() => true)])))
      throw new Error(`QEMU exited:\n${text.slice(-2000)}`);
  }
}

async function echo(vm: VmHandle): Promise<string> {
  const ch = await vm.connect(Date.now() + 20_000);
  const got = new Promise<string>((resolve) => {
    let s = "";
    ch.onData((b) => {
      s += new TextDecoder().decode(b);
      if (s.includes("ping-after-restore")) resolve(s);
    });
  });
  ch.write(new TextEncoder().encode("ping-after-restore"));
  const out = await Promise.race([got, Bun.sleep(30_000).then(() => "no echo")]);
  ch.close();
  return out;
}

describe("save/restore argv and state files", () => {
  test("-incoming defer only when restoring", () => {
    const s = spec(join(dir ?? tmpdir(), "argv"), "/r.ext4");
    const o = { accelerator: "tcg" as const, qemuBin: "qemu", agentSocketPath: "/a", qmpSocketPath: "/q" };
    expect(buildQemuArgv(s, o).join(" ")).not.toContain("-incoming");
    expect(buildQemuArgv({ ...s, restoreFrom: "/m" }, o).slice(-2)).toEqual(["-incoming", "defer"]);
  });

  test("a saved state is used only whole, with its hash, for the same machine shape", async () => {
    const home = join(dir, "home");
    const id = "ws_000000000001";
    mkdirSync(join(home, "workspaces", id), { recursive: true });
    const r = {
      workspace_id: id,
      backend: "qemu",
      accelerator: "tcg",
      vcpu_count: 1,
      mem_mib: 512,
      network_policy: "off",
    } as WorkspaceRecord;
    expect(await verifyPausedState(home, r)).toEqual({ ok: false, reason: "no saved machine state" });
    // a pause killed midway leaves only paused.tmp/: never used
    const mem = beginPausedState(home, id);
    writeFileSync(mem, "machine state bytes");
    expect((await verifyPausedState(home, r)).ok).toBe(false);
    const sha = new Bun.CryptoHasher("sha256").update("machine state bytes").digest("hex");
    commitPausedState(home, r, { bytes: 19, sha256: sha });
    const ok = await verifyPausedState(home, r);
    expect(ok.ok).toBe(true);
    expect(ok.ok && ok.path).toBe(join(pausedDir(home, id), "memory"));
    expect((await verifyPausedState(home, { ...r, mem_mib: 1024 })).ok).toBe(false);
    writeFileSync(join(pausedDir(home, id), "memory"), "machine state bytez");
    expect(await verifyPausedState(home, r)).toEqual({
      ok: false,
      reason: "the memory file's sha256 does not match",
    });
    writeFileSync(join(pausedDir(home, id), "memory"), "short");
    expect((await verifyPausedState(home, r)).ok).toBe(false);
    discardPausedState(home, id);
    expect(existsSync(pausedDir(home, id))).toBe(false);
  });
});

needs("qemu", "kernel", "busybox", "mkfs.ext4").describe("qemu save/restore (TCG)", () => {
  test("a guest counter continues after save → kill → restore into a new QEMU; the port echoes after", async () => {
    const fs = rootfs();
    const s1 = spec(join(dir, "run1"), fs);
    const backend = qemuBackend({ accelerator: "tcg" });
    const vm1 = await backend.boot(s1);
    let lastBefore = 0;
    const state = join(dir, "memory");
    try {
      const text = await waitConsole(s1, (t) => ticks(t).some((n) => n >= 5), vm1);
      expect(text).toContain("pause-test-init booted");
      const saved = await vm1.saveState?.(state, Date.now() + 120_000);
      expect(saved?.bytes).toBeGreaterThan(1024 * 1024);
      expect(saved?.sha256).toBe(new Bun.CryptoHasher("sha256").update(readFileSync(state)).digest("hex"));
      // stopped for the save: the counter printed nothing more meanwhile
      lastBefore = Math.max(...ticks(readFileSync(s1.consoleLogPath, "utf8")));
    } finally {
      vm1.kill();
      await vm1.exited;
    }
    const s2 = spec(join(dir, "run2"), fs, { restoreFrom: state });
    const vm2 = await backend.boot(s2);
    try {
      const text = await waitConsole(s2, (t) => ticks(t).length >= 3, vm2);
      expect(text).not.toContain("pause-test-init booted"); // no second boot
      expect(Math.min(...ticks(text))).toBeGreaterThan(lastBefore);
      expect(await echo(vm2)).toContain("ping-after-restore");
    } finally {
      await vm2.stop(5000);
    }
  });
});
