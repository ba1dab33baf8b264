/**
 * The supervisor's own requests (`sup.*`), served by the per-workspace supervisor itself
 * on run/supervisor.sock and never relayed to the agent (every other op is relayed as is).
 * Same framing and conventions as the agent's messages (messages.ts); shared here so the
 * client (src/manager) and the supervisor (src/supervisor) use one definition, pinned by
 * messages.snapshot.json.
 */
import * as v from "valibot";

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

export const SUPERVISOR_TABLE = {
  "sup.status": { request: SupStatusRequest, result: SupStatusResult },
  "sup.stop": { request: SupStopRequest, result: SupStopResult },
  "sup.delete": { request: SupDeleteRequest, result: SupDeleteResult },
} as const;

export type SupervisorOp = keyof typeof SUPERVISOR_TABLE;

/** Requests with this prefix are the supervisor's own. */
export const SUPERVISOR_OP_PREFIX = "sup.";
