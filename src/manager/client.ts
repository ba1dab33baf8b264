/** Clients (CLI, SDK, MCP) talk to a workspace only through its supervisor's socket. */
import { Connection, type StreamEvent } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { connectUnixChannel } from "../vmm/socket-channel.ts";
import { supervisorSocket } from "./paths.ts";
import type { WorkspaceRecord } from "./record.ts";

export async function connectSupervisor(
  home: string,
  r: WorkspaceRecord,
  timeoutMs = 5000,
): Promise<Connection> {
  if (r.state !== "started") {
    throw new PyroError("WORKSPACE_NOT_STARTED", `workspace ${r.name ?? r.workspace_id} is ${r.state}`, {
      hint: `start it with \`pyro workspace start ${r.name ?? r.workspace_id}\``,
    });
  }
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

/** One request to a workspace's agent (through its supervisor), then disconnect. */
export async function callWorkspace(
  home: string,
  r: WorkspaceRecord,
  request: Record<string, unknown>,
  opts: { input?: Uint8Array | AsyncIterable<Uint8Array>; onEvent?: (e: StreamEvent) => void } = {},
): Promise<Record<string, unknown>> {
  const conn = await connectSupervisor(home, r);
  try {
    return await conn.call(request, opts);
  } finally {
    conn.close();
  }
}
