/**
 * Guest-only system duties: clock, poweroff, and the agent's protection from the commands
 * it runs. Linux syscalls through bun:ffi.
 *
 * Self-protection invariants (guest only; see docs/architecture.md, "Process model"):
 * - The agent's oom_score_adj is -1000 (the OOM killer never picks it); every command is
 *   forked while the agent's value is briefly 0, so commands and all their descendants
 *   start at 0. JS is single-threaded and Bun.spawn forks synchronously, so no other
 *   spawn can fork inside that window.
 * - The agent's main thread (protocol, timers, task guard) runs SCHED_RR priority 1, its
 *   other threads at nice -20, all with SCHED_RESET_ON_FORK so commands start as ordinary
 *   SCHED_OTHER nice 0 tasks: thousands of runnable commands (a fork bomb) cannot keep the
 *   agent from answering, timing out and killing a process group. The kernel's RT
 *   throttling still leaves 5% of the CPU to everything else if the agent ever spins.
 * - The guest never reaches its task limit (kernel.threads-max; pid_max, 4096 in a
 *   CONFIG_BASE_SMALL kernel, is lifted above it): Bun aborts or hangs when it cannot
 *   create a thread, the pyro kernel has no pids cgroup, and RLIMIT_NPROC does not bind
 *   root. The task guard polls the task count and, past GUARD_TRIP of the limit, stops the
 *   largest process group that is neither the agent's nor init's nor already frozen:
 *   SIGSTOP or SIGKILL, as the policy says (exec freezes a timed command's group, so its
 *   timeout ends it as a timeout). The gap between the trip and the limit absorbs a late
 *   poll. This is a best effort; a pids cgroup would make it a guarantee.
 */
import { dlopen, FFIType } from "bun:ffi";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";

const RB_AUTOBOOT = 0x01234567;

// Opened once: each dlopen compiles its call stubs (bun:ffi), which under TCG costs tens of ms.
let lib: ReturnType<typeof openLibc> | null = null;
function libc() {
  lib ??= openLibc();
  return lib;
}

function openLibc() {
  return dlopen("libc.so.6", {
    sync: { args: [], returns: FFIType.void },
    reboot: { args: [FFIType.i32], returns: FFIType.i32 },
    clock_settime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    sched_setscheduler: { args: [FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    setpriority: { args: [FFIType.i32, FFIType.u32, FFIType.i32], returns: FFIType.i32 },
    mount: {
      args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr],
      returns: FFIType.i32,
    },
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
const SCHED_RR = 2;
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
  // The main thread (protocol, timers, the task guard) preempts every command.
  if (c.symbols.sched_setscheduler(0, SCHED_RR | SCHED_RESET_ON_FORK, new Int32Array([1])) !== 0)
    problems.push("sched_setscheduler(SCHED_RR) failed");
  return problems;
}

/** The cgroup v2 hierarchy and the cgroup every command runs in (see the header). */
const CGROUP_ROOT = "/sys/fs/cgroup";
const COMMANDS_CGROUP = `${CGROUP_ROOT}/commands`;
/** Part of the guest's task limit the commands may hold together. */
const COMMANDS_SHARE = 0.5;
/** pids.max of the commands cgroup once it is set up; null while commands run unconfined. */
let commandsMax: number | null = null;

/** Move this process (all its threads) into the cgroup at `dir`. */
function enterCgroup(dir: string): void {
  writeFileSync(`${dir}/cgroup.procs`, String(process.pid));
}

/**
 * Mount cgroup2 (if pyro-init did not), enable the pids controller for the root's children
 * and make `commands` with pids.max = `max`. Returns why not, or null when done.
 */
function confineCommands(max: number): string | null {
  try {
    const mounted = readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .some((l) => l.split(" ")[1] === CGROUP_ROOT && l.split(" ")[2] === "cgroup2");
    const z = (t: string) => Buffer.from(`${t}\0`);
    if (!mounted && libc().symbols.mount(z("cgroup2"), z(CGROUP_ROOT), z("cgroup2"), 0n, null) !== 0)
      return "cannot mount cgroup2";
    if (!readFileSync(`${CGROUP_ROOT}/cgroup.controllers`, "utf8").split(/\s+/).includes("pids"))
      return "the kernel has no pids cgroup controller";
    writeFileSync(`${CGROUP_ROOT}/cgroup.subtree_control`, "+pids");
    mkdirSync(COMMANDS_CGROUP, { recursive: true });
    writeFileSync(`${COMMANDS_CGROUP}/pids.max`, String(max));
    commandsMax = max;
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Run `spawn` (which must fork synchronously) so the forked command starts at oom_score_adj 0
 * and inside the commands cgroup (the agent itself is back where it was right after).
 */
export function spawnUnprotected<T>(spawn: () => T): T {
  if (!protectedFromOom && commandsMax === null) return spawn();
  if (protectedFromOom) writeFileSync(OOM_ADJ, "0");
  let moved = false;
  if (commandsMax !== null) {
    try {
      enterCgroup(COMMANDS_CGROUP);
      moved = true;
    } catch {} // a command that cannot be confined still runs; the guard watches the guest
  }
  try {
    return spawn();
  } finally {
    if (moved) enterCgroup(CGROUP_ROOT);
    if (protectedFromOom) writeFileSync(OOM_ADJ, "-1000");
  }
}

/** Fraction of the task limit past which the task guard acts. */
const GUARD_TRIP = 0.5;
/** How often the task count is read (one read of /proc/loadavg). */
const GUARD_POLL_MS = 50;
/** Past the trip, /proc is scanned again only after the count grew by this part of the limit. */
const GUARD_RESCAN = 0.05;

/** Tasks (processes and threads) in the guest now: the denominator of /proc/loadavg's 4th field. */
function taskCount(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[3]?.split("/")[1] ?? 0);
}

/** Tasks in the commands cgroup now (its pids.current). */
function commandsCount(): number {
  return Number(readFileSync(`${COMMANDS_CGROUP}/pids.current`, "utf8"));
}

/** The process group with the most tasks, leaving out init's, the agent's and `skip`ped ones. */
function largestGroup(skip: (pgid: number) => boolean): { pgid: number; tasks: number } | null {
  const ownPgid = Number(readFileSync("/proc/self/stat", "utf8").split(") ")[1]?.split(" ")[2]);
  const counts = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 1) continue;
    try {
      // after the comm: state ppid pgrp ...; num_threads is the 18th
      const fields = (readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1] ?? "").split(" ");
      const pgid = Number(fields[2]);
      const threads = Number(fields[17]) || 1;
      // zombies hold no more than a pid; ppid 2: kernel threads
      if (fields[0] === "Z" || fields[1] === "2" || pgid <= 1 || pgid === ownPgid || skip(pgid)) continue;
      counts.set(pgid, (counts.get(pgid) ?? 0) + threads);
    } catch {} // exited while we looked
  }
  let best: { pgid: number; tasks: number } | null = null;
  for (const [pgid, tasks] of counts) if (!best || tasks > best.tasks) best = { pgid, tasks };
  return best;
}

export interface GuardPolicy {
  /** groups the guard froze before: left alone (something else ends them) */
  isFrozen(pgid: number): boolean;
  /** the signal for the largest other group; `why` explains it to the command's owner */
  signalFor(pgid: number, why: string): "SIGSTOP" | "SIGKILL";
}

/**
 * Keep the guest under its task limit (see the header). After an action, /proc is scanned
 * again only when the count keeps growing (a frozen group's tasks still count, and a scan
 * of thousands of entries on every poll would starve everything else).
 */
export function startTaskGuard(policy: GuardPolicy, log: (line: string) => void): void {
  const sysctl = (name: string) => Number(readFileSync(`/proc/sys/kernel/${name}`, "utf8"));
  const raise = (name: string, value: number) => {
    try {
      if (sysctl(name) < value) writeFileSync(`/proc/sys/kernel/${name}`, String(value));
    } catch {}
  };
  let system: number;
  try {
    raise("pid_max", 32768); // 4096 in a CONFIG_BASE_SMALL kernel
    system = Math.min(sysctl("threads-max"), sysctl("pid_max"));
  } catch {
    return;
  }
  const unconfined = confineCommands(Math.floor(system * COMMANDS_SHARE));
  if (unconfined) log(`commands are not confined to a pids cgroup: ${unconfined}`);
  // confined: the commands cgroup's count against its pids.max; else the whole guest's
  const limit = commandsMax ?? system;
  const count = commandsMax === null ? taskCount : commandsCount;
  const trip = Math.floor(limit * GUARD_TRIP);
  // Frozen tasks still count: rescan only when the count grows, not on every poll.
  let scannedAt = 0;
  const tick = () => {
    try {
      const n = count();
      if (n <= trip) scannedAt = 0;
      else if (n >= scannedAt + limit * GUARD_RESCAN) {
        scannedAt = n;
        const g = largestGroup((pgid) => policy.isFrozen(pgid));
        if (g) {
          const where = commandsMax === null ? "the guest" : "the commands cgroup";
          const why = `process group ${g.pgid} had ${g.tasks} tasks, ${where} ${n} of its limit of ${limit}`;
          const signal = policy.signalFor(g.pgid, why);
          process.kill(-g.pgid, signal);
          log(`${signal} to ${why}`);
        }
      }
    } catch {}
    setTimeout(tick, GUARD_POLL_MS).unref?.();
  };
  tick();
}
