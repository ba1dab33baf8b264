/**
 * The typed way to talk to an agent or a supervisor: `call(conn, request)` checks the request
 * against its schema before sending it and the result against the op's result schema where
 * it arrives, and returns the result typed for that op. Host code never calls
 * `Connection.call` directly (messages.test.ts checks), so nothing crosses the wire
 * unchecked in either direction.
 *
 * - A request that fails its schema is INVALID_INPUT naming the field, the same error the
 *   agent gives for it (parseRequest is shared with guest/server.ts).
 * - A result that fails its schema is PROTOCOL_ERROR naming the op and the field; the
 *   caller gets no part of it.
 * - Data frames (file bytes, tar, exec output) go to `onEvent` unchecked: they are bytes.
 */
import * as v from "valibot";
import type { Connection, StreamEvent } from "./connection.ts";
import { PyroError } from "./errors.ts";
import { MESSAGE_TABLE } from "./messages.ts";
import { SUPERVISOR_TABLE } from "./supervisor.ts";

/** Everything a client may send on a supervisor connection: agent ops (relayed) and `sup.*`. */
export const CALL_TABLE = { ...MESSAGE_TABLE, ...SUPERVISOR_TABLE } as const;
type CallTable = typeof CALL_TABLE;
export type CallOp = keyof CallTable;
/** The request of `op` as the caller writes it (optional fields may be left out). */
export type RequestOf<Op extends CallOp> = v.InferInput<CallTable[Op]["request"]>;
/** The result of `op`, as `call` returns it. */
export type ResultOf<Op extends CallOp> = v.InferOutput<CallTable[Op]["result"]>;

export interface CallOptions {
  /** Channel-0 data sent after the request, then END (uploads, stdin). */
  input?: Uint8Array | AsyncIterable<Uint8Array>;
  /** Data frames and JSON events (exec's `started`) as they arrive. */
  onEvent?: (e: StreamEvent) => void;
}

/** "a.b.0.c" for the first issue, or "" when the value itself is wrong. */
function fieldOf(issue: v.BaseIssue<unknown> | undefined): string {
  return issue?.path?.map((p) => String(p.key)).join(".") ?? "";
}

/** Parse a request or fail with INVALID_INPUT naming the field (agent and host alike). */
export function parseRequest<S extends v.GenericSchema>(schema: S, request: unknown): v.InferOutput<S> {
  const parsed = v.safeParse(schema, request);
  if (parsed.success) return parsed.output;
  const issue = parsed.issues[0];
  const where = fieldOf(issue);
  throw new PyroError(
    "INVALID_INPUT",
    `bad request${where ? ` at ${where}` : ""}: ${issue?.message ?? "invalid"}`,
  );
}

function isCallOp(op: unknown): op is CallOp {
  return typeof op === "string" && Object.hasOwn(CALL_TABLE, op);
}

/** Check `raw` against the result schema of `op`: the typed result, or PROTOCOL_ERROR. */
export function parseResult<Op extends CallOp>(op: Op, raw: unknown): ResultOf<Op> {
  const schema: v.GenericSchema = CALL_TABLE[op].result;
  const parsed = v.safeParse(schema, raw);
  if (parsed.success) return parsed.output as ResultOf<Op>;
  const issue = parsed.issues[0];
  const field = fieldOf(issue);
  throw new PyroError(
    "PROTOCOL_ERROR",
    `the ${op} result does not match the protocol at ${field || "(the result itself)"}: ${issue?.message ?? "invalid"}`,
    { details: { op, field } },
  );
}

/** Send one request, await its result; both checked against the protocol (see the header). */
export async function call<Op extends CallOp>(
  conn: Connection,
  request: RequestOf<Op> & { op: Op },
  opts: CallOptions = {},
): Promise<ResultOf<Op>> {
  const op: unknown = request.op;
  if (!isCallOp(op)) throw new PyroError("INVALID_INPUT", `bad request at op: unknown op ${String(op)}`);
  parseRequest(CALL_TABLE[op].request, request);
  const raw = await conn.call(request as Record<string, unknown>, opts);
  return parseResult(request.op, raw);
}
