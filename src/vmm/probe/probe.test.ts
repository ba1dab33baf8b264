import { describe, expect, test } from "bun:test";
import { cachedResult, type ProbeCacheEntry, type ProbeKey } from "./cache.ts";
import { judgeProbe } from "./judge.ts";
import { hostTscKhz, parseCpuinfoTscKhz } from "./tsc.ts";

const BANNER =
  "[    0.000000] Linux version 6.1.192-pyro (root@build) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP\n";

describe("judgeProbe", () => {
  const quiet = { console: "", stderr: "", timedOut: false };

  test("nothing yet: keep watching", () => {
    expect(judgeProbe(quiet)).toEqual({ done: false });
    expect(judgeProbe({ ...quiet, console: BANNER })).toEqual({ done: false });
  });

  test("the mount-root panic means the kernel fully booted", () => {
    const console = `${BANNER}[    0.3] VFS: Cannot open root device "vda" or unknown-block(0,0): error -6\n[    0.3] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n`;
    const v = judgeProbe({ ...quiet, console });
    expect(v).toMatchObject({ done: true, usable: true });
    expect((v as { reason: string }).reason).toContain("6.1.192-pyro");
  });

  test("reaching init counts too", () => {
    expect(judgeProbe({ ...quiet, console: `${BANNER}Run /sbin/pyro-init as init process\n` })).toMatchObject(
      {
        usable: true,
      },
    );
  });

  test("the MSR abort seen on paravirtual KVM", () => {
    const stderr =
      "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x20c0004\nqemu-system-x86_64: ../target/i386/kvm/kvm.c:3185: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";
    const v = judgeProbe({ ...quiet, stderr });
    expect(v).toMatchObject({ done: true, usable: false });
    expect((v as { reason: string }).reason).toContain("MSR");
  });

  test("QEMU unable to initialise KVM", () => {
    const v = judgeProbe({
      ...quiet,
      stderr:
        "Could not access KVM kernel module: Permission denied\nqemu-system-x86_64: failed to initialize kvm: Permission denied\n",
    });
    expect(v).toMatchObject({ done: true, usable: false });
  });

  test("an early panic is not a boot", () => {
    const v = judgeProbe({
      ...quiet,
      console: `${BANNER}Kernel panic - not syncing: Attempted to kill the idle task!\n`,
    });
    expect(v).toMatchObject({ done: true, usable: false });
  });

  test("a hang after the banner names the last line", () => {
    const v = judgeProbe({
      ...quiet,
      console: `${BANNER}[    0.01] Probing EDD (edd=off to disable)... ok\n`,
      timedOut: true,
    });
    expect(v).toMatchObject({ done: true, usable: false });
    expect((v as { reason: string }).reason).toContain("Probing EDD");
  });

  test("silence until the deadline", () => {
    expect(judgeProbe({ ...quiet, timedOut: true })).toMatchObject({ done: true, usable: false });
  });

  test("QEMU exiting early", () => {
    const v = judgeProbe({
      ...quiet,
      stderr: "qemu: could not open kernel file '/x': No such file\n",
      exitCode: 1,
    });
    expect(v).toMatchObject({ done: true, usable: false });
    expect((v as { reason: string }).reason).toContain("could not open kernel");
  });
});

describe("probe cache", () => {
  const key: ProbeKey = { bootId: "b1", kernelSha256: "aa", kernelSize: 10, qemuBin: "/usr/bin/qemu" };
  const entry: ProbeCacheEntry = {
    version: 1,
    key,
    result: { usable: false, reason: "MSR" },
    probedAt: "2026-11-22T00:00:00Z",
    durationMs: 5,
  };
  const text = JSON.stringify(entry);

  test("hit when every key part matches", () => {
    expect(cachedResult(text, key)).toEqual({ usable: false, reason: "MSR" });
  });

  test("miss after a reboot, a kernel change or another QEMU", () => {
    expect(cachedResult(text, { ...key, bootId: "b2" })).toBeNull();
    expect(cachedResult(text, { ...key, kernelSha256: "bb" })).toBeNull();
    expect(cachedResult(text, { ...key, kernelSize: 11 })).toBeNull();
    expect(cachedResult(text, { ...key, qemuBin: "/opt/qemu" })).toBeNull();
  });

  test("missing or damaged files are misses", () => {
    expect(cachedResult(null, key)).toBeNull();
    expect(cachedResult("{not json", key)).toBeNull();
    expect(cachedResult(JSON.stringify({ ...entry, version: 2 }), key)).toBeNull();
    expect(cachedResult(JSON.stringify({ ...entry, result: { usable: "yes" } }), key)).toBeNull();
  });
});

describe("host TSC", () => {
  const cpu = (flags: string, mhz = "2700.000") =>
    `processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\ncpu MHz\t\t: ${mhz}\nflags\t\t: fpu ${flags} sse\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.000\n`;

  test("invariant TSC: cpu MHz of the first CPU", () => {
    expect(parseCpuinfoTscKhz(cpu("tsc constant_tsc nonstop_tsc"))).toBe(2_700_000);
    expect(parseCpuinfoTscKhz(cpu("tsc constant_tsc nonstop_tsc", "2399.998"))).toBe(2_399_998);
  });

  test("not invariant or unparsable: unknown", () => {
    expect(parseCpuinfoTscKhz(cpu("tsc constant_tsc"))).toBeUndefined();
    expect(parseCpuinfoTscKhz(cpu("tsc constant_tsc nonstop_tsc", "?"))).toBeUndefined();
    expect(parseCpuinfoTscKhz("")).toBeUndefined();
  });

  test("sysfs value preferred, cpuinfo fallback", () => {
    const files: Record<string, string> = { "/proc/cpuinfo": cpu("constant_tsc nonstop_tsc") };
    const read = (p: string) => {
      const t = files[p];
      if (t === undefined) throw new Error("ENOENT");
      return t;
    };
    expect(hostTscKhz(read)).toBe(2_700_000);
    files["/sys/devices/system/cpu/cpu0/tsc_freq_khz"] = "2693000\n";
    expect(hostTscKhz(read)).toBe(2_693_000);
  });
});
