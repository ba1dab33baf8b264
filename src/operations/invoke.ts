/** Validate input with the operation's schema, then run it: the single entry for all three faces. */
import * as v from "valibot";
import type { Ctx } from "../manager/context.ts";
import { PyroError } from "../protocol/errors.ts";
import type { Operation } from "./types.ts";

export function parseInput<I extends Record<string, unknown>>(op: Operation<I>, raw: unknown): I {
  const r = v.safeParse(op.input, raw ?? {});
  if (r.success) return r.output;
  const issue = r.issues[0];
  const where = issue?.path?.map((p) => String(p.key)).join(".");
  throw new PyroError(
    "INVALID_INPUT",
    `${op.name}: ${where ? `${where}: ` : ""}${issue?.message ?? "invalid input"}`,
    {
      details: {
        issues: r.issues.map((i) => ({
          path: i.path?.map((p) => String(p.key)).join("."),
          message: i.message,
        })),
      },
    },
  );
}

export async function invoke<I extends Record<string, unknown>, O extends Record<string, unknown>>(
  op: Operation<I, O>,
  ctx: Ctx,
  raw: unknown,
): Promise<O> {
  return op.run(ctx, parseInput(op, raw));
}
