/**
 * Host-side deadlines for agent calls, enforced by the supervisor on every call it relays
 * (documented in docs/public-contract.md, "Deadlines").
 *
 * Invariants:
 * - Every relayed call ends: with the agent's answer, or with a verdict from `overdue`.
 * - An exec waits at most its own timeout plus EXEC_GRACE_MS for a dead agent: at timeout +
 *   EXEC_KILL_AFTER_MS the supervisor asks the agent, on a fresh stream, to kill the
 *   command's process group; no answer by timeout + EXEC_GRACE_MS means the agent is dead.
 * - Any other call (and an exec whose kill was answered) is judged by progress, not total
 *   time: after IDLE_PROBE_MS with no frame moving either way the supervisor pings the
 *   agent; no answer within PROBE_ANSWER_MS means the agent is dead. An agent that answers
 *   keeps the call alive (a 512 MiB seed under TCG is slow, not dead), up to STALL_MAX_MS
 *   without progress.
 * - "Dead" is only concluded from silence while the supervisor was reading the agent: if
 *   flow control paused that reading during a probe, the probe is inconclusive.
 * - A silent agent whose VMM has halted the guest (agent.ts asks the VMM's run state) is
 *   reported as that halt, e.g. "the VM is paused on a host I/O error (host disk full?)".
 * - Silence is judged by the progress the guest could have made, not by wall time alone
 *   (judgeSilence): a starved VMM (its TCG vCPU thread getting little CPU on a loaded host)
 *   is slow, not dead. An unanswered probe counts against the agent once, after at least its
 *   answer window, the VMM process has run PROBE_CPU_MS of CPU since the probe was sent, or
 *   it was mostly idle (runnable, i.e. running or waiting for a CPU, less than
 *   PROBE_IDLE_DEMAND of the time) yet ran at least PROBE_IDLE_MIN_CPU_MS: it got the CPU it
 *   asked for, so the silence is the agent's. Otherwise the probe keeps waiting, up to
 *   PROBE_WALL_MAX_MS after it was sent: then a VMM that made too little progress (stopped,
 *   cgroup-frozen, wedged, or a host overloaded that long) is reported as such. Where the
 *   VMM's pid is unknown the answer window alone decides, as before. Host compat's "VMM" is
 *   the agent process itself.
 *   Measured (QEMU/TCG, 1 vCPU, load 5-9; docs/reliability.md "slow is not dead"): an answered ping
 *   costs the VMM 3.6-17.7 ms of CPU on an idle guest and 3.5-37 ms with a CPU hog and a tar
 *   running in it, but up to 3.5 s of CPU (10.6 s wall) while the agent imports a 54 MB tree
 *   (sync push): PROBE_CPU_MS is about 3x that. An idle guest's VMM runs 58 ms/s and is
 *   runnable ~34% of the time at load 4; a busy one (starved or not) 104-160% (its
 *   threads summed): PROBE_IDLE_DEMAND sits between, with room for an idle VMM's wake-ups
 *   waiting longer for a CPU on a loaded host.
 * - Test-only knob: PYRO_TEST_PROBE_WALL_MAX_MS (read once at load) shortens
 *   PROBE_WALL_MAX_MS so tests of a stopped VMM end in seconds; nothing else reads it.
 */
import { PyroError } from "../protocol/errors.ts";
import { sleep } from "../vmm/process.ts";

/** exec: how long past its own timeout the supervisor waits before giving up on the agent. */
export const EXEC_GRACE_MS = 10_000;
/** exec: how long past its own timeout the supervisor waits before sending `exec.kill`. */
export const EXEC_KILL_AFTER_MS = 5_000;
/** Other calls: silence (no frame either way) before the agent is pinged. */
export const IDLE_PROBE_MS = 10_000;
/** A probe the agent leaves unanswered this long means the agent is unresponsive. */
export const PROBE_ANSWER_MS = 5_000;
/** An unanswered probe counts against the agent once the VMM ran this much CPU since it was sent. */
export const PROBE_CPU_MS = 10_000;
/** ...or once the VMM was runnable less than this fraction of the time (idle: not starved)... */
export const PROBE_IDLE_DEMAND = 0.75;
/** ...and still ran this much CPU (a stopped or frozen VMM runs none). */
export const PROBE_IDLE_MIN_CPU_MS = 50;
/** A probe unanswered this long (wall time) ends the wait whatever the VMM's CPU: stopped or wedged. */
export const PROBE_WALL_MAX_MS = testKnob("PYRO_TEST_PROBE_WALL_MAX_MS") ?? 120_000;
/** A call that makes no progress this long fails even though the agent answers pings. */
export const STALL_MAX_MS = 10 * 60_000;

function testKnob(name: string): number | undefined {
  const n = Number(process.env[name]);
  return process.env[name] && Number.isFinite(n) && n > 0 ? n : undefined;
}

/** The VMM's scheduling since a probe was sent (all its threads together). */
export interface VmmSample {
  /** ms on a CPU */
  cpuMs: number;
  /** ms runnable but waiting for a CPU; null when the kernel does not say (no schedstat) */
  waitMs: number | null;
  /** the process is stopped (SIGSTOP, ptrace) now */
  stopped: boolean;
}

/** Why a probe went unanswered: the agent's fault, or the VMM got too little CPU to tell. */
export type Silence =
  | { by: "agent"; elapsedMs: number; cpuMs: number | null; idle: boolean }
  | { by: "vmm"; elapsedMs: number; cpuMs: number; stopped: boolean };

/**
 * The pure rule (header): a probe sent `elapsedMs` ago is still unanswered, its minimum
 * answer window is `windowMs`; `vmm` is the VMM's CPU use since it was sent (null: pid
 * unknown). "wait" or the verdict.
 */
export function judgeSilence(elapsedMs: number, windowMs: number, vmm: VmmSample | null): "wait" | Silence {
  if (elapsedMs < windowMs) return "wait";
  if (!vmm) return { by: "agent", elapsedMs, cpuMs: null, idle: false };
  const { cpuMs, waitMs, stopped } = vmm;
  if (cpuMs >= PROBE_CPU_MS) return { by: "agent", elapsedMs, cpuMs, idle: false };
  const idle =
    !stopped &&
    waitMs !== null &&
    cpuMs >= PROBE_IDLE_MIN_CPU_MS &&
    cpuMs + waitMs < elapsedMs * PROBE_IDLE_DEMAND;
  if (idle) return { by: "agent", elapsedMs, cpuMs, idle: true };
  if (elapsedMs >= Math.max(PROBE_WALL_MAX_MS, windowMs)) return { by: "vmm", elapsedMs, cpuMs, stopped };
  return "wait";
}

/** The words for an unanswered probe, after `what` (e.g. "did not answer a ping"). */
export function silenceMessage(what: string, s: Silence): string {
  if (s.by === "vmm") {
    return `the workspace agent ${what} for ${secs(s.elapsedMs)}, but its VMM made too little progress to tell: ${Math.round(s.cpuMs)} ms of CPU in that time (${s.stopped ? "the VMM process is stopped" : "host overloaded or VMM stopped"})`;
  }
  if (s.cpuMs === null) return `the workspace agent ${what} within ${secs(s.elapsedMs)}`;
  return `the workspace agent ${what} though its VM ran for ${Math.round(s.cpuMs)} ms of CPU in ${secs(s.elapsedMs)}${s.idle ? " and was mostly idle" : ""}`;
}

export interface WatchedCall {
  op: string;
  /** exec: the command's own timeout (the agent enforces it) */
  timeoutMs?: number;
  started: number;
  /** when a frame of this call last moved, either way */
  lastProgress: number;
  /** exec: the command's process group, once the agent reported `started` */
  pid: number | null;
}

/**
 * "halted": the agent was silent because its VMM has halted the guest (a host I/O error, a
 * panic); the error says why, and replaces the generic AGENT_UNRESPONSIVE verdict.
 */
export type ProbeOutcome =
  | "answered"
  | "silent"
  | "inconclusive"
  | { halted: PyroError }
  | { silent: Silence };
/**
 * Send `request` on a fresh stream and report whether the agent answered: it gets at least
 * `ms`, longer while judgeSilence says the VMM had too little CPU to answer.
 */
export type Probe = (request: Record<string, unknown>, ms: number) => Promise<ProbeOutcome>;

export interface Verdict {
  error: PyroError;
  /** the agent itself is unresponsive (not only this call) */
  agentDead: boolean;
}

/** Sleep until the time `at`, or less if `signal` aborts. */
const sleepUntil = (at: number, signal: AbortSignal) => sleep(Math.max(at - Date.now(), 0), signal);

const secs = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/**
 * Wait until `call` is overdue and say why it must end; null once `signal` aborts (the call
 * settled). `hint` is attached to every verdict's error.
 */
export async function overdue(
  call: WatchedCall,
  probe: Probe,
  signal: AbortSignal,
  hint: string,
): Promise<Verdict | null> {
  const dead = (message: string): Verdict => ({
    error: new PyroError("AGENT_UNRESPONSIVE", message, { hint, details: { op: call.op } }),
    agentDead: true,
  });
  let lastAnswer = call.started;
  if (call.op === "exec" && call.timeoutMs !== undefined) {
    const giveUpAt = call.started + call.timeoutMs + EXEC_GRACE_MS;
    await sleepUntil(call.started + call.timeoutMs + EXEC_KILL_AFTER_MS, signal);
    if (signal.aborted) return null;
    const req = call.pid ? { op: "exec.kill", pid: call.pid } : { op: "ping" };
    const outcome = await probe(req, Math.max(giveUpAt - Date.now(), 1));
    if (signal.aborted) return null;
    if (typeof outcome === "object" && "halted" in outcome) return { error: outcome.halted, agentDead: true };
    if (outcome !== "answered" && outcome !== "inconclusive") {
      const late = Math.max(Date.now() - call.started - call.timeoutMs, EXEC_GRACE_MS);
      const why =
        outcome === "silent"
          ? "the workspace agent did not answer a request to kill it"
          : silenceMessage("did not answer a request to kill it", outcome.silent);
      return dead(
        `the command had no result ${secs(late)} after its ${secs(call.timeoutMs)} timeout and ${why}`,
      );
    }
    lastAnswer = Date.now();
  }
  for (;;) {
    const next = Math.max(call.lastProgress, lastAnswer) + IDLE_PROBE_MS;
    if (Date.now() < next) {
      await sleepUntil(next, signal);
      if (signal.aborted) return null;
      continue; // progress may have moved the mark meanwhile
    }
    const outcome = await probe({ op: "ping" }, PROBE_ANSWER_MS);
    if (signal.aborted) return null;
    if (typeof outcome === "object" && "halted" in outcome) return { error: outcome.halted, agentDead: true };
    if (outcome !== "answered" && outcome !== "inconclusive") {
      const silence: Silence =
        outcome === "silent"
          ? { by: "agent", elapsedMs: PROBE_ANSWER_MS, cpuMs: null, idle: false }
          : outcome.silent;
      return dead(
        `${call.op}: nothing moved for ${secs(Date.now() - call.lastProgress)} and ${silenceMessage("did not answer a ping", silence)}`,
      );
    }
    lastAnswer = Date.now();
    if (lastAnswer - call.lastProgress > STALL_MAX_MS) {
      return {
        error: new PyroError(
          "GUEST_TIMEOUT",
          `${call.op}: the workspace agent is alive but this call made no progress for ${secs(STALL_MAX_MS)}`,
          { details: { op: call.op } },
        ),
        agentDead: false,
      };
    }
  }
}
