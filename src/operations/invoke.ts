/**
 * The single entry for all three faces: parse the input with the operation's schema, check
 * the workspace state it accepts, run it, check the result against its output schema, and
 * record activity for mutations. CLI, SDK and MCP differ only in the `prepare` step (MCP
 * confines host paths and clamps sizes) and in how they render the result.
 */
import * as v from "valibot";
import type { Ctx } from "../manager/context.ts";
import { resolveWorkspace, updateRecord } from "../manager/store.ts";
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

async function checkState(op: AnyOperation, ctx: Ctx, input: Record<string, unknown>): Promise<void> {
  if (!op.states || typeof input.workspace_id !== "string") return;
  const r = await resolveWorkspace(ctx.home, input.workspace_id);
  if (op.states.includes(r.state)) return;
  const ref = r.name ?? r.workspace_id;
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
  const out = checkOutput(op, await any.run(ctx, input));
  if (op.mutates) await touch(ctx, (out as Record<string, unknown>).workspace_id);
  return out;
}
