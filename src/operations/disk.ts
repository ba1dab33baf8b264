/** Offline disk tools for stopped workspaces: read the workspace disk with no VM running. */
import * as v from "valibot";
import { listHostDir, readHostFile } from "../manager/disk/hostdir.ts";
import { shapeContent } from "../manager/files.ts";
import { dataDiskPath } from "../manager/paths.ts";
import type { WorkspaceRecord } from "../manager/record.ts";
import { resolveWorkspace } from "../manager/store.ts";
import { PyroError } from "../protocol/errors.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { contentOnlyFlag, renderContent, renderListing } from "./render.ts";
import { defineOperation } from "./types.ts";

const RO = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

async function stopped(home: string, ref: string): Promise<WorkspaceRecord> {
  const r = await resolveWorkspace(home, ref);
  if (r.state === "started") {
    throw new PyroError(
      "WORKSPACE_NOT_STOPPED",
      `workspace ${r.name ?? r.workspace_id} is running; disk tools read a stopped workspace`,
      {
        hint: `pyro workspace stop ${r.name ?? r.workspace_id}`,
      },
    );
  }
  return r;
}

export const diskListOp = defineOperation({
  name: "workspace_disk_list",
  sdk: "listWorkspaceDisk",
  sdkArgs: ["workspace_id", "path"],
  output: out.fileListing,
  mutates: false,
  states: ["created", "stopped"],
  cli: ["workspace", "disk", "list"],
  positionals: ["workspace_id", "path"],
  summary: "List /workspace files of a STOPPED workspace, offline.",
  description:
    "List files under /workspace by reading a stopped workspace's disk offline (no VM is started, nothing in it runs).",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    path: v.optional(f.workspacePath, "/workspace"),
    recursive: v.optional(f.recursive),
  }),
  annotations: RO,
  profiles: ["workspace-full"],
  run: async (ctx, input) => {
    const r = await stopped(ctx.home, input.workspace_id);
    const res =
      r.backend === "host"
        ? await listHostDir(ctx.home, r, input.path, { recursive: input.recursive ?? false })
        : await (await import("../manager/disk/index.ts")).listDisk(
            dataDiskPath(ctx.home, r.workspace_id),
            input.path,
            {
              recursive: input.recursive ?? false,
            },
          );
    return { workspace_id: r.workspace_id, ...res };
  },
  render: renderListing,
});

export const diskReadOp = defineOperation({
  name: "workspace_disk_read",
  sdk: "readWorkspaceDisk",
  sdkArgs: ["workspace_id", "path"],
  output: out.fileContent,
  mutates: false,
  states: ["created", "stopped"],
  cli: ["workspace", "disk", "read"],
  positionals: ["workspace_id", "path"],
  summary: "Read a /workspace file of a STOPPED workspace, offline.",
  description:
    "Read up to max_bytes (default 65536) of a file under /workspace from a stopped workspace's disk, offline.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    path: f.workspacePath,
    max_bytes: v.optional(f.maxReadBytes),
  }),
  annotations: RO,
  profiles: ["workspace-full"],
  cliFlags: contentOnlyFlag,
  run: async (ctx, input) => {
    const r = await stopped(ctx.home, input.workspace_id);
    const res =
      r.backend === "host"
        ? await readHostFile(ctx.home, r, input.path, { maxBytes: input.max_bytes })
        : await (await import("../manager/disk/index.ts")).readDisk(
            dataDiskPath(ctx.home, r.workspace_id),
            input.path,
            { maxBytes: input.max_bytes },
          );
    const shaped = shapeContent(
      res.path,
      res.size_bytes,
      Buffer.from(res.content),
      res.truncated,
      res.encoding_hint,
    );
    return { workspace_id: r.workspace_id, ...shaped };
  },
  render: renderContent,
});

export const diskExportOp = defineOperation({
  name: "workspace_disk_export",
  sdk: "exportWorkspaceDisk",
  sdkArgs: ["workspace_id", "output"],
  output: out.diskExported,
  mutates: false,
  states: ["created", "stopped"],
  cli: ["workspace", "disk", "export"],
  positionals: ["workspace_id"],
  summary: "Export a STOPPED workspace's raw ext4 disk image (runtime state scrubbed).",
  description:
    "Copy the raw ext4 image of a stopped workspace's writable disk to a new host file (sparse), with runtime-only state scrubbed and the filesystem checked.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    output: v.pipe(
      v.string(),
      v.minLength(1),
      v.description("Host file to create (over MCP: confined like workspace_export's output)."),
    ),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  profiles: ["workspace-full"],
  hostPaths: { output: "write" },
  run: async (ctx, input) => {
    const r = await stopped(ctx.home, input.workspace_id);
    if (r.backend === "host")
      throw new PyroError(
        "INVALID_INPUT",
        "host-compat workspaces have no disk image; use `pyro workspace export`",
      );
    return {
      workspace_id: r.workspace_id,
      ...(await (
        await import("../manager/disk/index.ts")
      ).exportDisk(dataDiskPath(ctx.home, r.workspace_id), input.output, { scrub: true })),
    };
  },
  render: (out) =>
    `exported disk → ${out.output} (${out.size_bytes} bytes, ${out.allocated_bytes} allocated)`,
});
