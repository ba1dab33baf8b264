/** File operations on a started workspace (through its supervisor and agent). */
import { PyroError } from "../protocol/errors.ts";
import { Channel } from "../protocol/frame.ts";
import { callWorkspace } from "./client.ts";
import type { WorkspaceRecord } from "./record.ts";

export const DEFAULT_READ_BYTES = 65536;
/** Largest text one write call may carry (the agent's own cap is the same). */
export const MAX_WRITE_BYTES = 16 * 1024 * 1024;

export async function listFiles(home: string, r: WorkspaceRecord, path: string, recursive: boolean) {
  const res = await callWorkspace(home, r, { op: "fs.list", path, recursive });
  return { workspace_id: r.workspace_id, ...res } as Record<string, unknown>;
}

export async function statFile(home: string, r: WorkspaceRecord, path: string) {
  return callWorkspace(home, r, { op: "fs.stat", path });
}

export async function readWorkspaceFile(
  home: string,
  r: WorkspaceRecord,
  path: string,
  maxBytes = DEFAULT_READ_BYTES,
) {
  const parts: Uint8Array[] = [];
  const res = await callWorkspace(
    home,
    r,
    { op: "fs.read", path, max_bytes: maxBytes },
    {
      onEvent: (e) => {
        if (e.kind === "data" && e.channel === Channel.STDOUT) parts.push(e.bytes);
      },
    },
  );
  const bytes = Buffer.concat(parts);
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  // Content that is not valid UTF-8 travels as base64 so MCP clients get it intact.
  const utf8 = res.encoding_hint !== "binary" && !text.includes("\uFFFD");
  return {
    workspace_id: r.workspace_id,
    path: String(res.path),
    size_bytes: Number(res.size_bytes),
    bytes_read: bytes.byteLength,
    truncated: Boolean(res.truncated),
    encoding: utf8 ? "utf8" : "base64",
    content: utf8 ? text : bytes.toString("base64"),
    raw: bytes,
  };
}

export async function writeWorkspaceFile(home: string, r: WorkspaceRecord, path: string, text: string) {
  const data = new TextEncoder().encode(text);
  if (data.byteLength > MAX_WRITE_BYTES)
    throw new PyroError(
      "FILE_TOO_LARGE",
      `text is ${data.byteLength} bytes; at most ${MAX_WRITE_BYTES} per write`,
    );
  const res = await callWorkspace(home, r, { op: "fs.write", path, create_parents: true }, { input: data });
  return { workspace_id: r.workspace_id, ...res, bytes_written: data.byteLength } as Record<string, unknown>;
}

/** The agent sends the patch text as data (it can be large) and the rest as the result. */
export async function diffCall(home: string, r: WorkspaceRecord, maxBytes?: number): Promise<Record<string, unknown>> {
  const parts: Uint8Array[] = [];
  const req: Record<string, unknown> = { op: "diff" };
  if (maxBytes !== undefined) req.max_bytes = maxBytes;
  const res = await callWorkspace(home, r, req, {
    onEvent: (e) => {
      if (e.kind === "data" && e.channel === Channel.STDOUT) parts.push(e.bytes);
    },
  });
  const { patch_bytes: _b, ...rest } = res;
  return { workspace_id: r.workspace_id, patch: Buffer.concat(parts).toString("utf8"), ...rest };
}
