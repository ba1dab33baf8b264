/**
 * probeKvm against real QEMU. The TCG run checks that a working boot is recognised; the KVM
 * run reports this host's verdict (whatever it is: it depends on the host) and its cache.
 */
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { needs } from "../../../test/capabilities.ts";
import { findQemu } from "../qemu/binary.ts";
import { findTestKernel } from "../qemu/testing.ts";
import { probeKvm } from "./kvm.ts";

// Real QEMU: boots take seconds under TCG and the KVM probe waits up to 8 s on hosts where
// KVM hangs. Generous limits; nothing here asserts timings.
setDefaultTimeout(120_000);

const qemu = findQemu();
const kernel = findTestKernel();
const dir = mkdtempSync(join(tmpdir(), "pyro-probe-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a missing device is reported without booting", async () => {
  const r = await probeKvm({
    kernelPath: "/nonexistent",
    qemuBin: "/nonexistent",
    devicePath: join(dir, "kvm"),
  });
  expect(r.usable).toBe(false);
  expect(r.reason).toContain("does not exist");
});

test("an unreadable kernel is not usable, and not cached", async () => {
  const cacheFile = join(dir, "never.json");
  const r = await probeKvm({
    kernelPath: join(dir, "no-vmlinux"),
    qemuBin: "/bin/true",
    cacheFile,
    accelerator: "tcg",
  });
  expect(r.usable).toBe(false);
  expect(r.reason).toContain("ENOENT");
  expect(existsSync(cacheFile)).toBe(false);
});

needs("qemu", "kernel").test(
  "the boot check recognises a kernel that boots (TCG stands in for KVM)",
  async () => {
    const r = await probeKvm({
      kernelPath: kernel!,
      qemuBin: qemu!,
      accelerator: "tcg",
      cpuModels: ["max"],
      timeoutMs: 60_000,
    });
    expect(r).toMatchObject({ usable: true, cpuModel: "max", cached: false });
    expect(r.reason).toContain("-pyro");
  },
);

needs("qemu", "kernel", "kvm-device").test("this host's KVM verdict, cached per boot", async () => {
  const cacheFile = join(dir, "kvm-probe.json");
  const first = await probeKvm({ kernelPath: kernel!, qemuBin: qemu!, cacheFile });
  console.log(`KVM probe: usable=${first.usable} in ${first.durationMs} ms: ${first.reason}`);
  expect(first.cached).toBe(false);
  expect(first.reason.length).toBeGreaterThan(0);
  const entry = JSON.parse(readFileSync(cacheFile, "utf8"));
  expect(entry.key.bootId).toBe(readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim());
  const second = await probeKvm({ kernelPath: kernel!, qemuBin: qemu!, cacheFile });
  expect(second).toMatchObject({ usable: first.usable, reason: first.reason, cached: true });
});
