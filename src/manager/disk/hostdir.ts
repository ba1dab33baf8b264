/**
 * A stopped host-compat workspace has no disk image: its /workspace is a host directory.
 * Its files are read by the host agent itself, started just for the call (no supervisor;
 * nothing of the workspace runs), so the confinement rules are exactly those of a running
 * workspace and no host code duplicates them. Results have the shapes of listDisk/readDisk.
 * Callers make sure the workspace is stopped.
 */
import { call } from "../../protocol/call.ts";
import type { Connection } from "../../protocol/connection.ts";
import { Channel } from "../../protocol/frame.ts";
import { prepareBoot } from "../boot.ts";
import { startMachine } from "../machine.ts";
import type { WorkspaceRecord } from "../record.ts";
import type { DiskListResult, DiskReadResult } from "./index.ts";

async function withHostAgent<T>(
  home: string,
  r: WorkspaceRecord,
  fn: (conn: Connection) => Promise<T>,
): Promise<T> {
  const { backend, spec } = await prepareBoot(home, r);
  const machine = await startMachine(backend, spec);
  try {
    return await fn(machine.conn);
  } finally {
    await machine.shutdown();
  }
}

export function listHostDir(
  home: string,
  r: WorkspaceRecord,
  path: string,
  opts: { recursive: boolean },
): Promise<DiskListResult> {
  return withHostAgent(home, r, (conn) => call(conn, { op: "fs.list", path, recursive: opts.recursive }));
}

export function readHostFile(
  home: string,
  r: WorkspaceRecord,
  path: string,
  opts: { maxBytes?: number },
): Promise<DiskReadResult> {
  return withHostAgent(home, r, async (conn) => {
    const parts: Uint8Array[] = [];
    const { bytes: _, ...res } = await call(
      conn,
      { op: "fs.read", path, max_bytes: opts.maxBytes },
      {
        onEvent: (e) => {
          if (e.kind === "data" && e.channel === Channel.STDOUT) parts.push(e.bytes);
        },
      },
    );
    return { ...res, content: Buffer.concat(parts) };
  });
}
