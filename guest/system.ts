/**
 * Guest-only system duties: clock, poweroff, and the agent's protection from the commands
 * it runs. Linux syscalls through bun:ffi.
 *
 * Self-protection invariants (guest only; see docs/architecture.md, "Process model"):
 * - The agent's oom_score_adj is -1000 (the OOM killer never picks it); every command is
 *   forked while the agent's value is briefly 0, so commands and all their descendants
 *   start at 0. JS is single-threaded and Bun.spawn forks synchronously, so no other
 *   spawn can fork inside that window.
 * - Every agent thread runs at nice -20 with SCHED_RESET_ON_FORK, so its children start at
 *   nice 0 and a CPU-starving command (a fork bomb) cannot keep the agent from answering,
 *   timing out and killing a process group.
 */
import { dlopen, FFIType } from "bun:ffi";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";

const RB_AUTOBOOT = 0x01234567;

function libc() {
  return dlopen("libc.so.6", {
    sync: { args: [], returns: FFIType.void },
    reboot: { args: [FFIType.i32], returns: FFIType.i32 },
    clock_settime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    sched_setscheduler: { args: [FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    setpriority: { args: [FFIType.i32, FFIType.u32, FFIType.i32], returns: FFIType.i32 },
  });
}

/** Every mounted ext4 is read-only now (so its journal is marked clean). */
function ext4AllReadOnly(): boolean {
  try {
    return readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .filter((l) => l.split(" ")[2] === "ext4")
      .every((l) => (l.split(" ")[3] ?? "").split(",").includes("ro"));
  } catch {
    return true;
  }
}

/**
 * Flush, remount everything read-only, and reset: QEMU (-no-reboot) and Firecracker both
 * exit on the guest's reset. The read-only remount (sysrq "u") leaves the workspace disk's
 * journal clean, so offline disk tools can read a stopped workspace without recovery.
 */
export async function powerOff(): Promise<never> {
  const c = libc();
  c.symbols.sync();
  try {
    writeFileSync("/proc/sysrq-trigger", "u");
    const deadline = Date.now() + 3000;
    while (!ext4AllReadOnly() && Date.now() < deadline) await Bun.sleep(10);
  } catch {}
  c.symbols.sync();
  c.symbols.reboot(RB_AUTOBOOT);
  process.exit(0);
}

/** Set the guest clock to the host's, to the millisecond (clock_settime(CLOCK_REALTIME)). */
export function setClock(unixMs: number): void {
  const ts = new BigInt64Array([BigInt(Math.floor(unixMs / 1000)), BigInt((unixMs % 1000) * 1_000_000)]);
  libc().symbols.clock_settime(0, ts);
}

const SCHED_OTHER = 0;
const SCHED_RESET_ON_FORK = 0x40000000;
const PRIO_PROCESS = 0;
const OOM_ADJ = "/proc/self/oom_score_adj";

/** True once protectAgent() made the agent's oom_score_adj -1000. */
let protectedFromOom = false;

/**
 * Make the agent outlive what it runs: OOM immunity and priority over commands. Failures
 * are reported, not fatal (an agent without protection still serves).
 */
export function protectAgent(): string[] {
  const problems: string[] = [];
  try {
    writeFileSync(OOM_ADJ, "-1000");
    protectedFromOom = true;
  } catch (err) {
    problems.push(`oom_score_adj: ${(err as Error).message}`);
  }
  const c = libc();
  const param = new Int32Array([0]);
  for (const tid of readdirSync("/proc/self/task").map(Number)) {
    if (c.symbols.sched_setscheduler(tid, SCHED_OTHER | SCHED_RESET_ON_FORK, param) !== 0)
      problems.push(`sched_setscheduler(${tid}) failed`);
    if (c.symbols.setpriority(PRIO_PROCESS, tid, -20) !== 0) problems.push(`setpriority(${tid}) failed`);
  }
  return problems;
}

/** Run `spawn` (which must fork synchronously) so the forked command starts at oom_score_adj 0. */
export function spawnUnprotected<T>(spawn: () => T): T {
  if (!protectedFromOom) return spawn();
  writeFileSync(OOM_ADJ, "0");
  try {
    return spawn();
  } finally {
    writeFileSync(OOM_ADJ, "-1000");
  }
}
