/**
 * Clients (CLI, SDK, MCP) talk to a workspace only through its supervisor's socket.
 * Long-lived clients (the SDK, the MCP server) keep one connection per workspace open and
 * reuse it; the one-shot CLI connects per call.
 */
import { type CallOp, type CallOptions, call, type RequestOf, type ResultOf } from "../protocol/call.ts";
import { Connection } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { connectUnixChannel } from "../vmm/socket-channel.ts";
import { supervisorSocket } from "./paths.ts";
import type { WorkspaceRecord } from "./record.ts";

let pooling = false;
const pool = new Map<string, Promise<Connection>>();

/** Keep supervisor connections open for reuse (SDK and MCP server processes). */
export function enableConnectionPooling(): void {
  pooling = true;
}

async function openConnection(home: string, r: WorkspaceRecord, timeoutMs: number): Promise<Connection> {
  try {
    const ch = await connectUnixChannel(supervisorSocket(home, r.workspace_id), Date.now() + timeoutMs);
    return new Connection(ch, {
      lostCode: "SUPERVISOR_UNREACHABLE",
      lostMessage: "the workspace supervisor went away",
    });
  } catch (err) {
    throw new PyroError(
      "SUPERVISOR_UNREACHABLE",
      `cannot reach the supervisor of ${r.workspace_id}: ${(err as Error).message}`,
    );
  }
}

function requireStarted(r: WorkspaceRecord): void {
  if (r.state !== "started") {
    const ref = r.name ?? r.workspace_id;
    throw new PyroError("WORKSPACE_NOT_STARTED", `workspace ${ref} is ${r.state}`, {
      hint: `${r.state === "paused" ? "resume" : "start"} it with \`pyro workspace ${r.state === "paused" ? "resume" : "start"} ${ref}\``,
    });
  }
}

/** A connection to the workspace's supervisor; `release` closes it unless it is pooled. */
export async function acquireSupervisor(
  home: string,
  r: WorkspaceRecord,
  timeoutMs = 5000,
): Promise<{ conn: Connection; release: () => void }> {
  requireStarted(r);
  if (!pooling) {
    const conn = await openConnection(home, r, timeoutMs);
    return { conn, release: () => conn.close() };
  }
  const key = `${home}\0${r.workspace_id}\0${r.supervisor_pid ?? ""}`;
  let p = pool.get(key);
  if (p) {
    const existing = await p.catch(() => null);
    if (existing && !existing.isClosed) return { conn: existing, release: () => {} };
    pool.delete(key);
  }
  p = openConnection(home, r, timeoutMs);
  pool.set(key, p);
  p.then(
    (c) => c.onClose(() => pool.delete(key)),
    () => pool.delete(key),
  );
  return { conn: await p, release: () => {} };
}

/**
 * One request to a workspace's agent (relayed by its supervisor) or to the supervisor itself
 * (`sup.*`), checked both ways against src/protocol (see call.ts) and typed by its op.
 */
export async function callWorkspace<Op extends CallOp>(
  home: string,
  r: WorkspaceRecord,
  request: RequestOf<Op> & { op: Op },
  opts: CallOptions = {},
): Promise<ResultOf<Op>> {
  const { conn, release } = await acquireSupervisor(home, r);
  try {
    return await call<Op>(conn, request, opts);
  } finally {
    release();
  }
}
