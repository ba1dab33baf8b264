/**
 * The single entry for all three faces: parse the input with the operation's schema, check
 * the workspace state it accepts, run it, check the result against its output schema, and
 * record activity for mutations. CLI, SDK and MCP differ only in the `prepare` step (MCP
 * confines host paths and clamps sizes) and in how they render the result.
 */
import * as v from "valibot";
import type { Ctx } from "../manager/context.ts";
import { resumeWorkspace } from "../manager/pause.ts";
import { resolveWorkspace, updateRecord, withLifecycle } from "../manager/store.ts";
import { PyroError } from "../protocol/errors.ts";
import type { AnyOperation, ObjectSchema, Operation } from "./types.ts";

function issuesError(op: AnyOperation, issues: v.BaseIssue<unknown>[], what: string): PyroError {
  const where = (i?: v.BaseIssue<unknown>) => i?.path?.map((p) => String(p.key)).join(".");
  const first = issues[0];
  return new PyroError(
    what === "input" ? "INVALID_INPUT" : "INTERNAL",
    `${op.name}${what === "input" ? "" : " result"}: ${where(first) ? `${where(first)}: ` : ""}${first?.message ?? `invalid ${what}`}`,
    { details: { issues: issues.map((i) => ({ path: where(i), message: i.message })) } },
  );
}

export function parseInput<IS extends ObjectSchema>(
  op: Operation<IS, any, string, string, readonly string[]>,
  raw: unknown,
): v.InferOutput<IS> {
  const r = v.safeParse(op.input, raw ?? {});
  if (r.success) return r.output;
  throw issuesError(op as AnyOperation, r.issues, "input");
}

/** The result as its schema says; a mismatch is a bug in pyro (INTERNAL naming the field). */
export function checkOutput<OS extends ObjectSchema>(
  op: Operation<any, OS, string, string, readonly string[]>,
  out: unknown,
): v.InferOutput<OS> {
  const r = v.safeParse(op.output, out);
  if (r.success) return r.output;
  throw issuesError(op as AnyOperation, r.issues, "output");
}

/**
 * A paused workspace is resumed by the first operation that needs its machine (the other half
 * of auto_pause_after_seconds, src/manager/auto-pause.ts; the same for a manual pause): the
 * operation then runs as on a workspace that never paused. The record keeps resumed_by.
 */
const resumesPaused = (op: AnyOperation) => !!op.states?.includes("started") && !op.states.includes("paused");

async function resumeFor(op: AnyOperation, ctx: Ctx, id: string, ref: string): Promise<void> {
  ctx.progress(`workspace ${ref} is paused; resuming it for ${op.name}`);
  await resumeWorkspace(ctx, id, op.name);
}

async function checkState(op: AnyOperation, ctx: Ctx, input: Record<string, unknown>): Promise<void> {
  if (!op.states || typeof input.workspace_id !== "string") return;
  const r = await resolveWorkspace(ctx.home, input.workspace_id);
  if (op.states.includes(r.state)) return;
  const ref = r.name ?? r.workspace_id;
  if (r.state === "paused" && resumesPaused(op)) return resumeFor(op, ctx, r.workspace_id, ref);
  if (r.state === "started")
    throw new PyroError("WORKSPACE_NOT_STOPPED", `workspace ${ref} is running; ${op.name} needs it stopped`, {
      hint: `pyro workspace stop ${ref}`,
    });
  throw new PyroError("WORKSPACE_NOT_STARTED", `workspace ${ref} is ${r.state}`, {
    hint:
      r.state === "paused"
        ? `resume it with \`pyro workspace resume ${ref}\``
        : `start it with \`pyro workspace start ${ref}\``,
  });
}

/**
 * Did the operation fail only because its workspace was paused before the call reached the
 * machine? Then it is resumed (true) and can run again: nothing of it ran. Only failures that
 * prove nothing was sent qualify — the record said not started, or the supervisor's socket
 * could not be reached at all — and only when the workspace is paused once any pause under
 * way has finished (an auto-pausing supervisor holds the lifecycle lock until it exits).
 */
async function pausedMeanwhile(
  op: AnyOperation,
  ctx: Ctx,
  input: Record<string, unknown>,
  err: unknown,
): Promise<boolean> {
  if (!resumesPaused(op) || typeof input.workspace_id !== "string") return false;
  if (!(err instanceof PyroError)) return false;
  const unsent =
    err.code === "WORKSPACE_NOT_STARTED" ||
    (err.code === "SUPERVISOR_UNREACHABLE" && err.message.startsWith("cannot reach"));
  if (!unsent) return false;
  const r0 = await resolveWorkspace(ctx.home, input.workspace_id).catch(() => null);
  if (!r0) return false;
  await withLifecycle(ctx.home, ctx.env, r0.workspace_id, async () => {}).catch(() => {});
  const r = await resolveWorkspace(ctx.home, r0.workspace_id).catch(() => null);
  if (r?.state !== "paused") return false;
  await resumeFor(op, ctx, r.workspace_id, r.name ?? r.workspace_id);
  return true;
}

/** Bump last_activity_at after a mutation (best effort: the mutation itself succeeded). */
async function touch(ctx: Ctx, workspaceId: unknown): Promise<void> {
  if (typeof workspaceId !== "string" || !workspaceId.startsWith("ws_")) return;
  await updateRecord(ctx.home, workspaceId, (r) => ({
    ...r,
    last_activity_at: new Date().toISOString(),
  })).catch(() => {});
}

export interface InvokeOptions {
  /** a face's own step between parsing and running (MCP: host-path confinement, size clamps) */
  prepare?(input: Record<string, unknown>): Record<string, unknown>;
}

export async function invoke<IS extends ObjectSchema, OS extends ObjectSchema>(
  op: Operation<IS, OS, string, string, readonly string[]>,
  ctx: Ctx,
  raw: unknown,
  opts: InvokeOptions = {},
): Promise<v.InferOutput<OS>> {
  const any = op as AnyOperation;
  let input = parseInput(any, raw) as Record<string, unknown>;
  if (opts.prepare) input = opts.prepare(input);
  await checkState(any, ctx, input);
  let result: unknown;
  try {
    result = await any.run(ctx, input);
  } catch (err) {
    // Paused (auto-pause) between the state check and the call: resume, run it once more.
    if (!(await pausedMeanwhile(any, ctx, input, err))) throw err;
    result = await any.run(ctx, input);
  }
  const out = checkOutput(op, result);
  if (op.mutates) await touch(ctx, (out as Record<string, unknown>).workspace_id);
  return out;
}
