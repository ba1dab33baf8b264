/** What happened in a workspace since its last reset: commands, changes, exports, snapshots. */
import { existsSync, readFileSync } from "node:fs";
import type { Ctx } from "./context.ts";
import { diffCall } from "./files.ts";
import { publicRecord } from "./record.ts";
import { exportsLogPath } from "./reset.ts";
import { workspaceServices } from "./services.ts";
import { listSnapshots } from "./snapshots.ts";
import { resolveWorkspace } from "./store.ts";
import { readHistory } from "./workspaces.ts";

export function readExports(home: string, id: string): Array<Record<string, unknown>> {
  const p = exportsLogPath(home, id);
  if (!existsSync(p)) return [];
  return readFileSync(p, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

export async function workspaceSummary(ctx: Ctx, ref: string) {
  const r = await resolveWorkspace(ctx.home, ref);
  const history = readHistory(ctx.home, r.workspace_id);
  let changes: Record<string, unknown> | null = null;
  if (r.state === "started") {
    const d = await diffCall(ctx.home, r, 0);
    changes = { files: d.files, summary: d.summary };
  }
  return {
    workspace_id: r.workspace_id,
    workspace: publicRecord(r),
    since: r.reset_at ?? r.created_at,
    commands: {
      count: history.length,
      failed: history.filter((h) => h.exit_code !== 0).length,
      timed_out: history.filter((h) => h.timed_out).length,
      recent: history.slice(-10),
    },
    changes,
    exports: readExports(ctx.home, r.workspace_id),
    snapshots: listSnapshots(ctx.home, r.workspace_id),
    services: workspaceServices(ctx.home, r),
  };
}
