/**
 * Reading a probe boot: `/dev/kvm` opening is not enough on nested or paravirtual hosts
 * (on a PVM host, `-cpu host` aborts on MSR 0x10a and other CPU models hang), so the probe boots
 * the real kernel with no root disk and looks for how far it got.
 */

export interface ProbeObservation {
  console: string;
  stderr: string;
  /** QEMU's exit code; undefined while it still runs, null when killed by a signal. */
  exitCode?: number | null;
  timedOut: boolean;
}

export type ProbeVerdict = { done: false } | { done: true; usable: boolean; reason: string };

// start_kernel's banner: the vCPU executes guest code at all.
const STARTED = /Linux version \S+/;
// All initcalls ran (timers, interrupts, devices): the kernel got to mounting root or init.
// With no disk attached the usual end is the mount-root panic.
const BOOTED =
  /VFS: Unable to mount root fs|VFS: Cannot open root device|Run \S+ as init process|No working init found|Requested init \S+ failed/;
// QEMU's KVM setup failing on an MSR the host will not take (seen on a PVM host: MSR 0x10a).
const MSR_ABORT = /failed to set MSR|kvm_buf_set_msrs|Assertion .*MSR|MSR 0x[0-9a-f]+/i;
const KVM_INIT =
  /failed to initialize kvm|Could not access KVM kernel module|KVM is not supported|kvm: .*not supported/i;

export function lastLine(text: string): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return (lines.at(-1) ?? "").slice(0, 200);
}

/** Decide from what QEMU has shown so far; `done: false` means keep watching. */
export function judgeProbe(o: ProbeObservation): ProbeVerdict {
  const banner = STARTED.exec(o.console)?.[0];
  if (BOOTED.test(o.console))
    return { done: true, usable: true, reason: `kernel booted under KVM (${banner ?? "no banner"})` };
  if (MSR_ABORT.test(o.stderr))
    return { done: true, usable: false, reason: `QEMU aborted on an MSR: ${lastLine(o.stderr)}` };
  if (KVM_INIT.test(o.stderr))
    return { done: true, usable: false, reason: `QEMU cannot use KVM: ${lastLine(o.stderr)}` };
  const panic = /Kernel panic - not syncing: .*/.exec(o.console)?.[0];
  if (panic)
    return { done: true, usable: false, reason: `guest kernel panicked early: ${panic.slice(0, 200)}` };
  if (o.exitCode !== undefined) {
    const why = lastLine(o.stderr) || lastLine(o.console) || "no output";
    return {
      done: true,
      usable: false,
      reason: `QEMU exited (${o.exitCode ?? "signal"}) before the kernel booted: ${why}`,
    };
  }
  if (o.timedOut) {
    const reason = banner
      ? `kernel started (${banner}) but hung; last console line: ${lastLine(o.console)}`
      : "no sign of life from the guest kernel before the deadline";
    return { done: true, usable: false, reason };
  }
  return { done: false };
}
