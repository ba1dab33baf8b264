/**
 * Reset: throw the machine away and boot a fresh one from the environment plus the chosen
 * /workspace content (baseline or a named snapshot). Keeps the id, name, labels, the diff
 * baseline and the snapshots; clears command history (detached execs included), exports, shells
 * and services.
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { callWorkspace } from "./client.ts";
import type { Ctx } from "./context.ts";
import { execsDir } from "./detached.ts";
import { dataDiskPath, historyPath, hostRootDir, workspaceDir } from "./paths.ts";
import { readRecord, type WorkspaceRecord } from "./record.ts";
import { BASELINE, baselineTar, snapshotSource } from "./snapshots.ts";
import { findRecord, resolveWorkspace, updateRecord, withLifecycle } from "./store.ts";
import { importIntoWorkspace } from "./transfer.ts";
import { DATA_DISK_MIB, startWorkspaceLocked, stopWorkspaceLocked } from "./workspaces.ts";

export const exportsLogPath = (home: string, id: string) => join(workspaceDir(home, id), "exports.jsonl");

async function clearWorkspace(home: string, r: WorkspaceRecord): Promise<void> {
  const listing = await callWorkspace(home, r, { op: "fs.list", path: "/workspace", recursive: false });
  for (const e of listing.entries) {
    await callWorkspace(home, r, { op: "fs.remove", path: e.path, recursive: true });
  }
}

export async function resetWorkspace(
  ctx: Ctx,
  ref: string,
  snapshot = BASELINE,
): Promise<WorkspaceRecord & { restored_from: string }> {
  const id = findRecord(ctx.home, ref).workspace_id;
  return withLifecycle(ctx.home, ctx.env, id, () => resetLocked(ctx, id, snapshot));
}

async function resetLocked(
  ctx: Ctx,
  id: string,
  snapshot: string,
): Promise<WorkspaceRecord & { restored_from: string }> {
  const r0 = await resolveWorkspace(ctx.home, id);
  const source = snapshotSource(ctx.home, id, snapshot); // fail before touching anything
  const base = baselineTar(ctx.home, id);
  if (r0.state === "started") await stopWorkspaceLocked(ctx, id);
  ctx.progress(`resetting ${r0.name ?? id} to ${snapshot}`);
  // A brand-new writable layer: nothing of the old guest survives but what we restore.
  if (r0.backend === "host") {
    rmSync(hostRootDir(ctx.home, id), { recursive: true, force: true });
    mkdirSync(hostRootDir(ctx.home, id), { recursive: true });
  } else {
    rmSync(dataDiskPath(ctx.home, id), { force: true });
    const { createDataDisk } = await import("../env/build/datadisk.ts");
    await createDataDisk(dataDiskPath(ctx.home, id), DATA_DISK_MIB);
  }
  rmSync(historyPath(ctx.home, id), { force: true });
  rmSync(execsDir(ctx.home, id), { recursive: true, force: true }); // detached execs are history too
  rmSync(exportsLogPath(ctx.home, id), { force: true });
  await updateRecord(ctx.home, id, (x) => ({
    ...x,
    command_count: 0,
    reset_at: new Date().toISOString(),
    last_activity_at: new Date().toISOString(),
  }));
  await startWorkspaceLocked(ctx, id);
  const r = readRecord(ctx.home, id) as WorkspaceRecord;
  // The diff baseline stays the original one, whatever is restored on top of it.
  if (existsSync(base)) await importIntoWorkspace(ctx.home, r, base);
  await callWorkspace(ctx.home, r, { op: "baseline.capture" });
  if (snapshot !== BASELINE && source) {
    await clearWorkspace(ctx.home, r);
    await importIntoWorkspace(ctx.home, r, source);
  }
  return { ...(readRecord(ctx.home, id) as WorkspaceRecord), restored_from: snapshot };
}
