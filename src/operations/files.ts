/** Moving work in and out of a workspace: files, patches, diff, sync, export. */
import { appendFileSync } from "node:fs";
import * as v from "valibot";
import { callWorkspace } from "../manager/client.ts";
import { diffCall, listFiles, readWorkspaceFile, writeWorkspaceFile } from "../manager/files.ts";
import { exportsLogPath } from "../manager/reset.ts";
import { resolveWorkspace } from "../manager/store.ts";
import { exportToHost, importIntoWorkspace } from "../manager/transfer.ts";
import { PyroError } from "../protocol/errors.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { contentOnlyFlag, renderContent, renderListing } from "./render.ts";
import { defineOperation } from "./types.ts";

const RO = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const WRITE = { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false };

async function started(ctx: { home: string }, ref: string) {
  return resolveWorkspace(ctx.home, ref);
}

export const fileListOp = defineOperation({
  name: "workspace_file_list",
  sdk: "listWorkspaceFiles",
  sdkArgs: ["workspace_id", "path"],
  output: out.fileListing,
  mutates: false,
  states: ["started"],
  cli: ["workspace", "file", "list"],
  positionals: ["workspace_id", "path"],
  summary: "List files under a /workspace path.",
  description:
    "List the entries of a directory under /workspace (recursive: the whole subtree, without following symlinks). Each entry has path, artifact_type (file|directory|symlink|other), size_bytes, mode, mtime and link_target for symlinks.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    path: v.optional(f.workspacePath, "/workspace"),
    recursive: v.optional(f.recursive),
  }),
  annotations: RO,
  profiles: ["workspace-core", "workspace-full"],
  run: async (ctx, input) =>
    listFiles(ctx.home, await started(ctx, input.workspace_id), input.path, input.recursive ?? false),
  render: renderListing,
});

export const fileReadOp = defineOperation({
  name: "workspace_file_read",
  sdk: "readWorkspaceFile",
  sdkArgs: ["workspace_id", "path"],
  output: out.fileContent,
  mutates: false,
  states: ["started"],
  cli: ["workspace", "file", "read"],
  positionals: ["workspace_id", "path"],
  summary: "Read a file under /workspace (bounded).",
  description:
    "Read up to max_bytes (default 65536) of a file under /workspace. truncated says whether more exists; encoding is utf8, or base64 for content that is not valid UTF-8.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    path: f.workspacePath,
    max_bytes: v.optional(f.maxReadBytes),
  }),
  annotations: RO,
  profiles: ["workspace-core", "workspace-full"],
  cliFlags: contentOnlyFlag,
  run: async (ctx, input) =>
    readWorkspaceFile(ctx.home, await started(ctx, input.workspace_id), input.path, input.max_bytes),
  render: renderContent,
});

export const fileWriteOp = defineOperation({
  name: "workspace_file_write",
  sdk: "writeWorkspaceFile",
  sdkArgs: ["workspace_id", "path", "text"],
  output: out.fileWritten,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "file", "write"],
  positionals: ["workspace_id", "path"],
  summary: "Write a UTF-8 text file under /workspace (atomic).",
  description:
    "Create or replace a text file under /workspace (parents are created). The write is atomic (temp file + rename) and never follows a symlink out of /workspace. At most 16 MiB per call; over MCP the whole request is at most 8 MiB (larger ones get INPUT_TOO_LARGE), so write bigger files in parts or sync them in.",
  input: v.pipe(
    v.strictObject({
      workspace_id: f.workspaceRef,
      path: f.workspacePath,
      text: v.optional(v.pipe(v.string(), v.description("The new content."))),
      text_file: v.optional(
        v.pipe(v.string(), v.description("CLI/SDK: read the content from this host file instead.")),
      ),
    }),
    v.check(
      (i) => (i.text === undefined) !== (i.text_file === undefined),
      "give exactly one of text or text_file",
    ),
  ),
  annotations: WRITE,
  profiles: ["workspace-core", "workspace-full"],
  mcpOmit: ["text_file"],
  run: async (ctx, input) => {
    const text = input.text ?? (await readHostText(input.text_file as string));
    return writeWorkspaceFile(ctx.home, await started(ctx, input.workspace_id), input.path, text);
  },
  render: (out) => `wrote ${out.path} (${out.bytes_written} bytes)`,
});

async function readHostText(path: string): Promise<string> {
  const file = Bun.file(path);
  if (!(await file.exists())) throw new PyroError("FILE_NOT_FOUND", `no such file: ${path}`);
  return file.text();
}

export const patchApplyOp = defineOperation({
  name: "workspace_patch_apply",
  sdk: "applyWorkspacePatch",
  sdkArgs: ["workspace_id", "patch"],
  output: out.patchApplied,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "patch", "apply"],
  positionals: ["workspace_id"],
  summary: "Apply a unified diff to /workspace, all or nothing.",
  description:
    "Apply a unified diff (git diff or diff -u format; add, modify, delete, rename; a/ and b/ prefixes stripped; paths relative to /workspace). Every hunk is checked against the current files before anything is written; if any does not apply the result is PATCH_REJECTED naming the file and hunk, and nothing changes.",
  input: v.pipe(
    v.strictObject({
      workspace_id: f.workspaceRef,
      patch: v.optional(v.pipe(v.string(), v.description("The unified diff text."))),
      patch_file: v.optional(
        v.pipe(v.string(), v.description("CLI/SDK: read the diff from this host file.")),
      ),
    }),
    v.check(
      (i) => (i.patch === undefined) !== (i.patch_file === undefined),
      "give exactly one of patch or patch_file",
    ),
  ),
  annotations: WRITE,
  profiles: ["workspace-core", "workspace-full"],
  mcpOmit: ["patch_file"],
  run: async (ctx, input) => {
    const patch = input.patch ?? (await readHostText(input.patch_file as string));
    const r = await started(ctx, input.workspace_id);
    // Sent as a data stream, not inline: a frame holds at most 1 MiB, a patch up to 8 MiB.
    const body = new TextEncoder().encode(patch);
    return {
      workspace_id: r.workspace_id,
      ...(await callWorkspace(ctx.home, r, { op: "patch.apply" }, { input: body })),
    };
  },
  render: (out) =>
    (out.files as Array<Record<string, unknown>>).map((x) => `${x.status} ${x.path}`).join("\n") ||
    "nothing to apply",
});

export const diffOp = defineOperation({
  name: "workspace_diff",
  sdk: "diffWorkspace",
  sdkArgs: ["workspace_id"],
  output: out.diffResult,
  mutates: false,
  states: ["started"],
  cli: ["workspace", "diff"],
  positionals: ["workspace_id"],
  summary: "Show what changed in /workspace since its baseline.",
  description:
    "Compare /workspace with its baseline (captured at create): a unified patch for text files plus entries for binary, mode, symlink and type changes, with a summary. An unchanged workspace gives an empty patch.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    max_bytes: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(0),
        v.description("Cap on the patch text (default 4 MiB); truncated says when it was cut."),
      ),
    ),
  }),
  annotations: RO,
  profiles: ["workspace-core", "workspace-full"],
  run: async (ctx, input) => {
    const r = await started(ctx, input.workspace_id);
    return diffCall(ctx.home, r, input.max_bytes);
  },
  render: (out) => String(out.patch ?? "").replace(/\n$/, ""),
});

export const syncPushOp = defineOperation({
  name: "workspace_sync_push",
  sdk: "syncPush",
  sdkArgs: ["workspace_id", "source"],
  output: out.syncPushed,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "sync", "push"],
  positionals: ["workspace_id", "source"],
  summary: "Copy a host directory or archive into /workspace.",
  description:
    "Stream a host directory or a .tar/.tar.gz/.tgz archive into /workspace (or dest under it). Entries that would land outside /workspace (absolute paths, .., symlink tricks, devices) are refused with PATH_OUTSIDE_WORKSPACE. Modes and symlinks are kept. Does not change the diff baseline.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    source: v.pipe(
      v.string(),
      v.minLength(1),
      v.description(
        "Host directory or .tar/.tar.gz/.tgz file (over MCP: only under a root the server was granted with --allow-host-path).",
      ),
    ),
    dest: v.optional(
      v.pipe(v.string(), v.description("Destination directory under /workspace (default /workspace).")),
      "/workspace",
    ),
  }),
  annotations: WRITE,
  profiles: ["workspace-core", "workspace-full"],
  hostPaths: { source: "read" },
  run: async (ctx, input) => {
    const r = await started(ctx, input.workspace_id);
    return {
      workspace_id: r.workspace_id,
      ...(await importIntoWorkspace(ctx.home, r, input.source, input.dest)),
    };
  },
  render: (out) =>
    `pushed ${out.files} files, ${out.directories} directories, ${out.symlinks} symlinks (${out.bytes} bytes) into ${out.path}`,
});

export const exportOp = defineOperation({
  name: "workspace_export",
  sdk: "exportWorkspace",
  sdkArgs: ["workspace_id", "path", "output"],
  output: out.exported,
  mutates: false,
  states: ["started"],
  cli: ["workspace", "export"],
  positionals: ["workspace_id", "path"],
  summary: "Copy a file or directory from /workspace to a host path.",
  description:
    "Copy a file or directory under /workspace out to a new host path (output must not exist; its parent must). The only way results leave a workspace. Nothing is written outside output.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    path: f.workspacePath,
    output: v.pipe(
      v.string(),
      v.minLength(1),
      v.description(
        "Host path to create (file or directory). Over MCP: relative paths land in the server's export directory; absolute ones must lie in it or under a root granted with --allow-host-path DIR:rw.",
      ),
    ),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  profiles: ["workspace-core", "workspace-full"],
  hostPaths: { output: "write" },
  run: async (ctx, input) => {
    const r = await started(ctx, input.workspace_id);
    const out = await exportToHost(ctx.home, r, input.path, input.output, {
      guardWrite: ctx.guardHostWrite,
    });
    const entry = {
      path: input.path,
      output: out.output,
      artifact_type: out.artifact_type,
      bytes: out.bytes,
      exported_at: new Date().toISOString(),
    };
    appendFileSync(exportsLogPath(ctx.home, r.workspace_id), `${JSON.stringify(entry)}\n`);
    return { workspace_id: r.workspace_id, ...entry };
  },
  render: (out) => `exported ${out.path} → ${out.output}`,
});
