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
/** A call that makes no progress this long fails even though the agent answers pings. */
export const STALL_MAX_MS = 10 * 60_000;

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
export type ProbeOutcome = "answered" | "silent" | "inconclusive" | { halted: PyroError };
/** Send `request` on a fresh stream and report whether the agent answered within `ms`. */
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
    if (typeof outcome === "object") return { error: outcome.halted, agentDead: true };
    if (outcome === "silent") {
      return dead(
        `the command had no result ${secs(EXEC_GRACE_MS)} after its ${secs(call.timeoutMs)} timeout and the workspace agent did not answer a request to kill it`,
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
    if (typeof outcome === "object") return { error: outcome.halted, agentDead: true };
    if (outcome === "silent") {
      return dead(
        `${call.op}: nothing moved for ${secs(Date.now() - call.lastProgress)} and the workspace agent did not answer a ping within ${secs(PROBE_ANSWER_MS)}`,
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
