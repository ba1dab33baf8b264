/** File operations on a started workspace (through its supervisor and agent). */
import { PyroError } from "../protocol/errors.ts";
import { Channel } from "../protocol/frame.ts";
import { READ_DEFAULT_BYTES, WRITE_MAX_BYTES } from "../protocol/limits.ts";
import { callWorkspace } from "./client.ts";
import type { WorkspaceRecord } from "./record.ts";

export async function listFiles(home: string, r: WorkspaceRecord, path: string, recursive: boolean) {
  const res = await callWorkspace(home, r, { op: "fs.list", path, recursive });
  return { workspace_id: r.workspace_id, ...res };
}

export async function statFile(home: string, r: WorkspaceRecord, path: string) {
  return callWorkspace(home, r, { op: "fs.stat", path });
}

export async function readWorkspaceFile(
  home: string,
  r: WorkspaceRecord,
  path: string,
  maxBytes = READ_DEFAULT_BYTES,
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
  return {
    workspace_id: r.workspace_id,
    ...shapeContent(res.path, res.size_bytes, Buffer.concat(parts), res.truncated, res.encoding_hint),
  };
}

/**
 * One shape for file content in results (live reads and offline disk reads alike):
 * text that is valid UTF-8 travels as is, anything else as base64 so MCP clients get it intact.
 */
export function shapeContent(
  path: string,
  sizeBytes: number,
  bytes: Buffer,
  truncated: boolean,
  hint?: "utf8" | "binary",
) {
  const text = bytes.toString("utf8");
  const utf8 = hint !== "binary" && !text.includes("\uFFFD");
  return {
    path,
    size_bytes: sizeBytes,
    bytes_read: bytes.byteLength,
    truncated,
    encoding: utf8 ? "utf8" : "base64",
    content: utf8 ? text : bytes.toString("base64"),
  };
}

export async function writeWorkspaceFile(home: string, r: WorkspaceRecord, path: string, text: string) {
  const data = new TextEncoder().encode(text);
  if (data.byteLength > WRITE_MAX_BYTES)
    throw new PyroError(
      "FILE_TOO_LARGE",
      `text is ${data.byteLength} bytes; at most ${WRITE_MAX_BYTES} per write`,
    );
  const res = await callWorkspace(home, r, { op: "fs.write", path, create_parents: true }, { input: data });
  return { workspace_id: r.workspace_id, ...res, bytes_written: data.byteLength };
}

/** The agent sends the patch text as data (it can be large) and the rest as the result. */
export async function diffCall(home: string, r: WorkspaceRecord, maxBytes?: number) {
  const parts: Uint8Array[] = [];
  const res = await callWorkspace(
    home,
    r,
    { op: "diff", max_bytes: maxBytes },
    {
      onEvent: (e) => {
        if (e.kind === "data" && e.channel === Channel.STDOUT) parts.push(e.bytes);
      },
    },
  );
  const { patch_bytes: _b, ...rest } = res;
  return { workspace_id: r.workspace_id, patch: Buffer.concat(parts).toString("utf8"), ...rest };
}
