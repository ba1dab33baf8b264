/** Going back in time: snapshots, reset, and the summary of what happened since. */
import * as v from "valibot";
import { publicRecord } from "../manager/record.ts";
import { resetWorkspace } from "../manager/reset.ts";
import { createSnapshot, deleteSnapshot, listSnapshots } from "../manager/snapshots.ts";
import { resolveWorkspace } from "../manager/store.ts";
import { workspaceSummary } from "../manager/summary.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { renderTable, renderWorkspace } from "./render.ts";
import { defineOperation } from "./types.ts";

const snapName = v.pipe(
  v.string(),
  v.minLength(1),
  v.description('Snapshot name ([a-z0-9][a-z0-9._-]{0,62}; "baseline" is reserved).'),
);

export const snapshotCreateOp = defineOperation({
  name: "snapshot_create",
  sdk: "createSnapshot",
  sdkArgs: ["workspace_id", "name"],
  output: out.snapshotCreated,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "snapshot", "create"],
  positionals: ["workspace_id", "name"],
  summary: "Save /workspace as a named checkpoint.",
  description:
    "Save the workspace as a named snapshot, kept on the host outside the VM: in a guest, a copy of its whole disk (/workspace and every other change to the system), taken with the filesystem briefly frozen; in host compat, /workspace as a tar. Restore it later with workspace_reset snapshot=NAME.",
  input: v.strictObject({ workspace_id: f.workspaceRef, name: snapName }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  profiles: ["workspace-full"],
  run: async (ctx, input) => {
    const r = await resolveWorkspace(ctx.home, input.workspace_id);
    return { workspace_id: r.workspace_id, ...(await createSnapshot(ctx, r, input.name)) };
  },
  render: (out) => `snapshot ${out.name} (${out.size_bytes} bytes)`,
});

export const snapshotListOp = defineOperation({
  name: "snapshot_list",
  sdk: "listSnapshots",
  sdkArgs: ["workspace_id"],
  output: out.snapshotList,
  mutates: false,
  cli: ["workspace", "snapshot", "list"],
  positionals: ["workspace_id"],
  summary: "List a workspace's snapshots (baseline included).",
  description:
    "List the snapshots of a workspace: the automatic baseline and named ones, with sizes and times.",
  input: v.strictObject({ workspace_id: f.workspaceRef }),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-full"],
  run: async (ctx, input) => {
    const r = await resolveWorkspace(ctx.home, input.workspace_id);
    const snapshots = listSnapshots(ctx.home, r.workspace_id);
    return { workspace_id: r.workspace_id, snapshots, count: snapshots.length };
  },
  render: (out) =>
    renderTable([
      ["NAME", "KIND", "FORMAT", "SIZE", "CREATED"],
      ...out.snapshots.map((s) => [
        String(s.name),
        String(s.kind),
        String(s.format),
        String(s.size_bytes),
        String(s.created_at),
      ]),
    ]),
});

export const snapshotDeleteOp = defineOperation({
  name: "snapshot_delete",
  sdk: "deleteSnapshot",
  sdkArgs: ["workspace_id", "name"],
  output: out.snapshotDeleted,
  mutates: true,
  cli: ["workspace", "snapshot", "delete"],
  positionals: ["workspace_id", "name"],
  summary: "Delete a named snapshot.",
  description: "Delete a named snapshot (the baseline cannot be deleted).",
  input: v.strictObject({ workspace_id: f.workspaceRef, name: snapName }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  profiles: ["workspace-full"],
  run: async (ctx, input) => {
    const r = await resolveWorkspace(ctx.home, input.workspace_id);
    deleteSnapshot(ctx.home, r.workspace_id, input.name);
    return { workspace_id: r.workspace_id, name: input.name, deleted: true };
  },
  render: (out) => `deleted snapshot ${out.name}`,
});

export const resetOp = defineOperation({
  name: "workspace_reset",
  sdk: "resetWorkspace",
  sdkArgs: ["workspace_id"],
  output: out.resetResult,
  mutates: true,
  cli: ["workspace", "reset"],
  positionals: ["workspace_id"],
  summary: "Rebuild the workspace from its baseline or a snapshot.",
  description:
    "Throw the workspace's machine away and boot it again from the baseline (default) or a named snapshot: in a guest its whole disk is put back as it was when the snapshot was taken (in host compat, /workspace). The snapshot is verified against its recorded digest before anything changes (a corrupt one is refused with SNAPSHOT_CORRUPT); command history, shells and services are cleared; the id, name, labels, snapshots and the diff baseline are kept.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    snapshot: v.optional(
      v.pipe(v.string(), v.description("Snapshot to restore (default: baseline).")),
      "baseline",
    ),
  }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  profiles: ["workspace-core", "workspace-full"],
  run: async (ctx, input) => {
    const { restored_from, ...r } = await resetWorkspace(ctx, input.workspace_id, input.snapshot);
    return { ...publicRecord(r), restored_from };
  },
  render: (out) => `${renderWorkspace(out)}\n  restored:    ${out.restored_from}`,
});

export const summaryOp = defineOperation({
  name: "workspace_summary",
  sdk: "workspaceSummary",
  sdkArgs: ["workspace_id"],
  output: out.summaryResult,
  mutates: false,
  cli: ["workspace", "summary"],
  positionals: ["workspace_id"],
  summary: "Summarize commands, changes, exports and snapshots since the last reset.",
  description:
    "Summarize what happened in the workspace since it was created or last reset: commands run (failures, timeouts), files changed relative to the baseline, exports, snapshots.",
  input: v.strictObject({ workspace_id: f.workspaceRef }),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-core", "workspace-full"],
  run: (ctx, input) => workspaceSummary(ctx, input.workspace_id),
  render: (out) => {
    const c = out.commands as Record<string, unknown>;
    const ch = out.changes as { files: Array<Record<string, unknown>> } | null;
    const lines = [
      `workspace ${out.workspace_id} since ${out.since}`,
      `  commands:  ${c.count} run, ${c.failed} failed, ${c.timed_out} timed out`,
      `  changes:   ${ch ? `${ch.files.length} files` : "unknown (workspace stopped)"}`,
      ...(ch?.files ?? []).map((x) => `    ${x.status} ${x.path}`),
      `  exports:   ${(out.exports as unknown[]).length}`,
      `  snapshots: ${(out.snapshots as Array<Record<string, unknown>>).map((s) => s.name).join(", ")}`,
    ];
    return lines.join("\n");
  },
});
