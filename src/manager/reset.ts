/**
 * Reset: put the workspace back to its baseline or a named snapshot and boot it fresh. Keeps
 * the id, name, labels, the diff baseline and the snapshots; clears command history (detached
 * execs included), exports, shells and services.
 *
 * Order (never the current state destroyed before its replacement is proven good):
 * 1. build the new state BESIDE the current one — guest: a copy of the snapshot's disk image
 *    (`disk.ext4.new-PID`; disk-image.ts), or a new empty disk for an unseeded baseline; host
 *    compat: the snapshot's tar unpacked into `root.new-PID` — while the old machine still runs;
 * 2. verify it against the digest recorded when the snapshot was taken (SNAPSHOT_CORRUPT
 *    otherwise: the copy is dropped and the workspace keeps running as it was) and fsync it;
 * 3. stop the old machine;
 * 4. swap: rename the new disk over the old (guest) or exchange the two directories with
 *    renameat2(RENAME_EXCHANGE) (host compat) — the one atomic commit point;
 * 5. clear history, record `reset_at`; 6. boot.
 * A crash before 4 leaves the old state (and a temp file that the next reset or snapshot
 * sweeps); a crash after it leaves the new state, stopped (the next start boots it).
 * Crash points: FAULT_STEPS in disk-image.ts.
 *
 * Legacy tar snapshots (no digest, workspaces made before disk images) restore the old way
 * after the swap: the new disk starts empty, and the tars are imported once it has booted.
 */
import { mkdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fault } from "../base/fault.ts";
import { mark } from "../base/profile.ts";
import { unpackTar } from "../protocol/archive/index.ts";
import { callWorkspace } from "./client.ts";
import type { Ctx } from "./context.ts";
import { execsDir } from "./detached.ts";
import { cloneImage, exchangePaths, fsyncPath, sweepTemps, verifyContent } from "./disk-image.ts";
import { dataDiskPath, historyPath, hostRootDir, workspaceDir } from "./paths.ts";
import { readRecord, type WorkspaceRecord } from "./record.ts";
import { servicesDir } from "./services.ts";
import {
  BASELINE,
  captureBaselineSnapshot,
  dropLegacyBaselineTar,
  type SnapshotSource,
  snapshotSource,
} from "./snapshots.ts";
import { findRecord, resolveWorkspace, updateRecord, withLifecycle } from "./store.ts";
import { importIntoWorkspace } from "./transfer.ts";
import {
  DATA_DISK_MIB,
  type SupervisorLaunch,
  spawnSupervisor,
  startWorkspaceLocked,
  stopWorkspaceLocked,
} from "./workspaces.ts";

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

const isLegacy = (s: SnapshotSource | null) => s !== null && s.recorded === null;

async function resetLocked(
  ctx: Ctx,
  id: string,
  snapshot: string,
): Promise<WorkspaceRecord & { restored_from: string }> {
  mark("reset.begin");
  const r0 = await resolveWorkspace(ctx.home, id);
  const source = snapshotSource(ctx.home, id, snapshot); // fails before anything is touched
  const base = snapshot === BASELINE ? source : snapshotSource(ctx.home, id, BASELINE);
  const dir = workspaceDir(ctx.home, id);
  sweepTemps(dir);
  ctx.progress(`resetting ${r0.name ?? id} to ${snapshot}`);
  const host = r0.backend === "host";
  const current = host ? hostRootDir(ctx.home, id) : dataDiskPath(ctx.home, id);
  const fresh = `${current}.new-${process.pid}`;
  // A legacy tar is imported after boot, on top of the baseline: a verified image baseline, or an empty disk.
  const prebuilt = host ? source : isLegacy(source) ? (isLegacy(base) ? null : base) : source;
  // The next machine's supervisor loads while the disk is copied and the old machine stops;
  // it touches nothing until the boot below tells it to go (any failure before: cancelled).
  const launch = host ? undefined : spawnSupervisor(ctx, id, { hold: true });
  try {
    return await resetWith(ctx, id, snapshot, { source, base, dir, current, fresh, host, prebuilt, launch });
  } finally {
    launch?.cancel();
  }
}

async function resetWith(
  ctx: Ctx,
  id: string,
  snapshot: string,
  p: {
    source: SnapshotSource | null;
    base: SnapshotSource | null;
    dir: string;
    current: string;
    fresh: string;
    host: boolean;
    prebuilt: SnapshotSource | null;
    launch: SupervisorLaunch | undefined;
  },
): Promise<WorkspaceRecord & { restored_from: string }> {
  const { source, base, dir, current, fresh, host, prebuilt, launch } = p;
  try {
    // 1-2. the new state beside the current one, verified
    if (host) {
      mkdirSync(fresh, { mode: 0o755 });
      if (prebuilt) {
        if (prebuilt.recorded) await verifyContent(prebuilt.path, prebuilt.recorded, prebuilt.name);
        await unpackTar(Bun.file(prebuilt.path).stream(), fresh);
      }
      fault("reset.copied");
    } else if (prebuilt) {
      await cloneImage(prebuilt.path, fresh);
      fault("reset.copied");
      mark("reset.copied");
      if (prebuilt.recorded) await verifyContent(fresh, prebuilt.recorded, prebuilt.name);
    } else {
      const { createDataDisk } = await import("../env/build/datadisk.ts");
      await createDataDisk(fresh, DATA_DISK_MIB);
      fault("reset.copied");
    }
    mark("reset.checked");
    if (!host) fsyncPath(fresh);
    fault("reset.verified");
    mark("reset.fsynced");
    // 3. stop
    await stopWorkspaceLocked(ctx, id); // a no-op when stopped; a paused machine's saved state is dropped
    fault("reset.stopped");
    mark("reset.stopped");
    // 4. swap
    if (host) exchangePaths(fresh, current);
    else renameSync(fresh, current);
    fsyncPath(dir);
    fault("reset.swapped");
    mark("reset.swapped");
  } finally {
    rmSync(fresh, { recursive: true, force: true }); // host compat: the old tree, after the exchange
  }
  // 5. what the old machine did is history
  rmSync(historyPath(ctx.home, id), { force: true });
  rmSync(execsDir(ctx.home, id), { recursive: true, force: true }); // detached execs are history too
  rmSync(servicesDir(ctx.home, id), { recursive: true, force: true }); // so are services and their logs
  rmSync(exportsLogPath(ctx.home, id), { force: true });
  await updateRecord(ctx.home, id, (x) => ({
    ...x,
    command_count: 0,
    reset_at: new Date().toISOString(),
    last_activity_at: new Date().toISOString(),
  }));
  fault("reset.recorded");
  mark("reset.recorded");
  // 6. boot
  await startWorkspaceLocked(ctx, id, { launch });
  // a legacy tar baseline goes in first only when the disk started empty (no verified image under it)
  if (!host && isLegacy(source)) await restoreLegacyTars(ctx, id, source, prebuilt === null ? base : null);
  return { ...(readRecord(ctx.home, id) as WorkspaceRecord), restored_from: snapshot };
}

/**
 * A guest workspace from before disk images: its baseline and/or the chosen snapshot are tars
 * (without digests). Import them into the booted machine as the old reset did; a reset to a
 * legacy baseline then replaces the baseline tar by a baseline image, so the next is fast.
 */
async function restoreLegacyTars(
  ctx: Ctx,
  id: string,
  source: SnapshotSource | null,
  legacyBase: SnapshotSource | null,
): Promise<void> {
  const r = readRecord(ctx.home, id) as WorkspaceRecord;
  if (legacyBase) {
    await importIntoWorkspace(ctx.home, r, legacyBase.path);
    await callWorkspace(ctx.home, r, { op: "baseline.capture" });
  }
  if (source && source !== legacyBase) {
    await clearWorkspace(ctx.home, r);
    await importIntoWorkspace(ctx.home, r, source.path);
  } else if (legacyBase) {
    // the reset was to the legacy baseline itself: keep it as an image from now on
    await captureBaselineSnapshot(ctx.home, r);
    dropLegacyBaselineTar(ctx.home, id);
  }
}
