/**
 * The supervisor's own requests (`sup.*`), served by the per-workspace supervisor itself
 * on run/supervisor.sock and never relayed to the agent (every other op is relayed as is).
 * Same framing and conventions as the agent's messages (messages.ts); shared here so the
 * client (src/manager) and the supervisor (src/supervisor) use one definition, pinned by
 * messages.snapshot.json.
 */
import * as v from "valibot";
import { ExecRequest, SignalMessage } from "./messages.ts";

const posInt = v.pipe(v.number(), v.integer(), v.minValue(0));

export const SupStatusRequest = v.strictObject({ op: v.literal("sup.status") });
/** The machine behind the workspace, as the supervisor holds it. */
export const SupStatusResult = v.strictObject({
  /** "firecracker" | "qemu" | "host" (src/vmm's BackendName) */
  backend: v.string(),
  /** "kvm" | "tcg" | null */
  accelerator: v.nullable(v.string()),
  vmm_pid: posInt,
  supervisor_pid: posInt,
  kernel: v.string(),
  boot_id: v.string(),
  agent_version: v.string(),
});
/** Stop the machine (clean agent shutdown) and end the supervisor; answered first. */
export const SupStopRequest = v.strictObject({ op: v.literal("sup.stop") });
export const SupStopResult = v.strictObject({ stopping: v.literal(true) });
/** As sup.stop, then remove the workspace's files. */
export const SupDeleteRequest = v.strictObject({ op: v.literal("sup.delete") });
export const SupDeleteResult = v.strictObject({ deleting: v.literal(true) });

/**
 * Start a detached exec (src/supervisor/detached.ts): the supervisor runs `exec` on the agent
 * itself and spools its output to the workspace's logs/exec/<exec_id>/ on the host, so the
 * command outlives every client. Answered once the command runs (or already ended); a start
 * whose `idempotency_key` the workspace has seen answers with that exec (`reused: true`).
 */
export const SupExecStartRequest = v.strictObject({
  op: v.literal("sup.exec.start"),
  exec: ExecRequest,
  idempotency_key: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(200))),
});
export const SupExecStartResult = v.strictObject({
  exec_id: v.pipe(v.string(), v.regex(/^ex_[0-9a-f]{12}$/)),
  reused: v.boolean(),
});
/** Signal a running detached exec's process group; `killed` is false when it is not running. */
export const SupExecKillRequest = v.strictObject({
  op: v.literal("sup.exec.kill"),
  exec_id: v.string(),
  signal: SignalMessage.entries.signal,
});
export const SupExecKillResult = v.strictObject({ killed: v.boolean() });

export const SUPERVISOR_TABLE = {
  "sup.status": { request: SupStatusRequest, result: SupStatusResult },
  "sup.stop": { request: SupStopRequest, result: SupStopResult },
  "sup.delete": { request: SupDeleteRequest, result: SupDeleteResult },
  "sup.exec.start": { request: SupExecStartRequest, result: SupExecStartResult },
  "sup.exec.kill": { request: SupExecKillRequest, result: SupExecKillResult },
} as const;

export type SupervisorOp = keyof typeof SUPERVISOR_TABLE;

/** Requests with this prefix are the supervisor's own. */
export const SUPERVISOR_OP_PREFIX = "sup.";
