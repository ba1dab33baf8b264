/**
 * Snapshots of a workspace, kept on the host in its directory so a reset never depends on
 * the guest. `baseline` is implicit (taken at create, once /workspace is seeded); named
 * snapshots are explicit. Each is a data file plus a metadata file recording its digest,
 * which is checked before the data is used (disk-image.ts).
 *
 * Formats:
 * - `disk_image` (guest backends): a copy of the workspace's data disk taken while the guest
 *   has it flushed and frozen — the whole writable layer (/workspace, the rest of the
 *   guest's changes, the agent's diff baseline), so restoring one restores the machine's
 *   disk exactly. `workspaces/<id>/baseline.img`, `snapshots/NAME.img`.
 * - `tar` (host compat, which has no disk): /workspace as a tar, with its SHA-256.
 *   `baseline.tar`, `snapshots/NAME.tar`.
 * Metadata: `baseline.json`, `snapshots/NAME.json` (SnapshotMeta).
 *
 * Workspaces made by an older pyro have tar snapshots without a digest (`NAME.json` without
 * `format`; `baseline.tar` without `baseline.json`). They are read as they are (listed as
 * `tar`, restored by reset.ts's tar path without a digest check); nothing rewrites them, but
 * a guest workspace's first reset to a legacy baseline replaces it by a baseline image.
 *
 * Invariants: the data file is in place (renamed from a temp file, fsynced) before its
 * metadata is written, and a snapshot exists for list/reset/delete only once its metadata
 * does; a data file without metadata is debris of a crash and is removed by the next
 * create or list (so is a temp file whose writer is dead).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fault } from "../base/fault.ts";
import { PyroError } from "../protocol/errors.ts";
import { writeFileAtomic } from "./atomic.ts";
import type { Ctx } from "./context.ts";
import { captureImage, fileSha256, fsyncPath, type RecordedContent, sweepTemps } from "./disk-image.ts";
import { NAME_RE } from "./ids.ts";
import { dataDiskPath, workspaceDir } from "./paths.ts";
import type { WorkspaceRecord } from "./record.ts";
import { resolveWorkspace, withLifecycle } from "./store.ts";
import { exportToTarFile } from "./transfer.ts";

export const BASELINE = "baseline";
export type SnapshotFormat = "disk_image" | "tar";

export const snapshotsDir = (home: string, id: string) => join(workspaceDir(home, id), "snapshots");

/** The public view of a snapshot (snapshot list, create, summary). */
export interface SnapshotInfo {
  name: string;
  created_at: string;
  /** bytes the snapshot occupies on the host (allocated blocks of its file) */
  size_bytes: number;
  kind: "baseline" | "named";
  format: SnapshotFormat;
}

/** What the metadata file holds. `digest` is null only for a legacy tar. */
interface SnapshotMeta extends SnapshotInfo {
  digest: string | null;
  image_bytes: number;
}

export interface SnapshotSource {
  name: string;
  format: SnapshotFormat;
  path: string;
  /** what to check the data against; null for a legacy tar (taken before digests) */
  recorded: RecordedContent | null;
}

function dataPath(home: string, id: string, name: string, format: SnapshotFormat): string {
  const ext = format === "disk_image" ? "img" : "tar";
  return name === BASELINE
    ? join(workspaceDir(home, id), `baseline.${ext}`)
    : join(snapshotsDir(home, id), `${name}.${ext}`);
}
function metaPath(home: string, id: string, name: string): string {
  return name === BASELINE
    ? join(workspaceDir(home, id), "baseline.json")
    : join(snapshotsDir(home, id), `${name}.json`);
}

export function validateSnapshotName(name: string): string {
  if (!NAME_RE.test(name))
    throw new PyroError("INVALID_INPUT", `invalid snapshot name "${name}": use [a-z0-9][a-z0-9._-]{0,62}`);
  if (name === BASELINE) throw new PyroError("INVALID_INPUT", `"${BASELINE}" is reserved: it always exists`);
  return name;
}

function allocated(path: string): number {
  try {
    return statSync(path).blocks * 512;
  } catch {
    return 0;
  }
}

/** The metadata of a snapshot, legacy tars included; null when there is none. */
function readMeta(home: string, id: string, name: string): SnapshotMeta | null {
  const kind = name === BASELINE ? "baseline" : "named";
  const mp = metaPath(home, id, name);
  if (existsSync(mp)) {
    let raw: Partial<SnapshotMeta>;
    try {
      raw = JSON.parse(readFileSync(mp, "utf8"));
    } catch {
      throw new PyroError("SNAPSHOT_CORRUPT", `snapshot "${name}" has an unreadable metadata file`, {
        details: { snapshot: name },
      });
    }
    const format: SnapshotFormat = raw.format ?? "tar"; // legacy named tars have no format
    const path = dataPath(home, id, name, format);
    return {
      name,
      kind,
      format,
      created_at: raw.created_at ?? "",
      size_bytes: allocated(path),
      digest: raw.digest ?? null,
      image_bytes: raw.image_bytes ?? 0,
    };
  }
  if (name === BASELINE) {
    const legacy = dataPath(home, id, BASELINE, "tar");
    if (existsSync(legacy)) {
      const st = statSync(legacy);
      return {
        name,
        kind,
        format: "tar",
        created_at: st.mtime.toISOString(),
        size_bytes: st.blocks * 512,
        digest: null,
        image_bytes: st.size,
      };
    }
  }
  return null;
}

const publicInfo = (m: SnapshotMeta): SnapshotInfo => ({
  name: m.name,
  created_at: m.created_at,
  size_bytes: m.size_bytes,
  kind: m.kind,
  format: m.format,
});

/** Take a snapshot's data (image or tar) and record it; the caller keeps the workspace still. */
async function takeSnapshot(home: string, r: WorkspaceRecord, name: string): Promise<SnapshotInfo> {
  const id = r.workspace_id;
  const format: SnapshotFormat = r.backend === "host" ? "tar" : "disk_image";
  const file = dataPath(home, id, name, format);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  let recorded: RecordedContent;
  if (format === "disk_image") {
    const got = await captureImage(home, r, dataDiskPath(home, id), file);
    recorded = { digest: got.digest, image_bytes: got.image_bytes };
  } else {
    const bytes = await exportToTarFile(home, r, "/workspace", file);
    fsyncPath(file);
    recorded = { digest: await fileSha256(file), image_bytes: bytes };
  }
  fault("snapshot.published");
  const meta: SnapshotMeta = {
    name,
    kind: name === BASELINE ? "baseline" : "named",
    format,
    created_at: new Date().toISOString(),
    size_bytes: allocated(file),
    ...recorded,
  };
  try {
    writeFileAtomic(metaPath(home, id, name), JSON.stringify(meta));
  } catch (err) {
    // a full host disk: no data file is left without its metadata
    rmSync(file, { force: true });
    throw err;
  }
  return publicInfo(meta);
}

/**
 * The baseline snapshot, taken at create right after /workspace was seeded and the diff
 * baseline captured (an unseeded workspace has none: its baseline is an empty disk).
 */
export async function captureBaselineSnapshot(home: string, r: WorkspaceRecord): Promise<void> {
  await takeSnapshot(home, r, BASELINE);
}

export async function createSnapshot(ctx: Ctx, ref: WorkspaceRecord, name: string): Promise<SnapshotInfo> {
  validateSnapshotName(name);
  const id = ref.workspace_id;
  // Under the lifecycle lock: no stop, start or reset swaps the disk under the copy.
  return withLifecycle(ctx.home, ctx.env, id, async () => {
    sweepDebris(ctx.home, id);
    if (readMeta(ctx.home, id, name))
      throw new PyroError("ALREADY_EXISTS", `snapshot "${name}" already exists; delete it first`);
    const r = await resolveWorkspace(ctx.home, id);
    if (r.state !== "started") {
      throw new PyroError("WORKSPACE_NOT_STARTED", `workspace ${r.name ?? id} is ${r.state}`, {
        hint: "`pyro workspace start ID`",
      });
    }
    return takeSnapshot(ctx.home, r, name);
  });
}

/** Remove dead writers' temp files and data files that never got their metadata. */
function sweepDebris(home: string, id: string): void {
  sweepTemps(workspaceDir(home, id));
  const dir = snapshotsDir(home, id);
  sweepTemps(dir);
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {}
  for (const f of names) {
    const m = /^(.*)\.(img|tar)$/.exec(f);
    if (m && !existsSync(join(dir, `${m[1]}.json`))) rmSync(join(dir, f), { force: true });
  }
  const base = join(workspaceDir(home, id), "baseline.img");
  if (existsSync(base) && !existsSync(metaPath(home, id, BASELINE))) rmSync(base, { force: true });
}

export function listSnapshots(home: string, id: string): SnapshotInfo[] {
  const out: SnapshotInfo[] = [];
  // The baseline always exists; an unseeded workspace's baseline is empty and has no file.
  const base = readMeta(home, id, BASELINE);
  out.push(
    base
      ? publicInfo(base)
      : { name: BASELINE, created_at: "", size_bytes: 0, kind: "baseline", format: "disk_image" },
  );
  const dir = snapshotsDir(home, id);
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith(".json")) continue;
    const name = f.slice(0, -5);
    try {
      const m = readMeta(home, id, name);
      if (m) out.push(publicInfo(m));
    } catch {}
  }
  return out;
}

export function deleteSnapshot(home: string, id: string, name: string): void {
  if (name === BASELINE) throw new PyroError("INVALID_INPUT", "the baseline snapshot cannot be deleted");
  validateSnapshotName(name);
  if (!existsSync(metaPath(home, id, name)))
    throw new PyroError("SNAPSHOT_NOT_FOUND", `no snapshot "${name}"`);
  // metadata first: from then on the snapshot is gone even if the data removal is cut short
  rmSync(metaPath(home, id, name), { force: true });
  for (const format of ["disk_image", "tar"] as const)
    rmSync(dataPath(home, id, name, format), { force: true });
}

/**
 * What a reset restores from: a snapshot's data file and what it must match, or null for the
 * baseline of an unseeded workspace (an empty disk or directory).
 */
export function snapshotSource(home: string, id: string, name: string): SnapshotSource | null {
  if (name !== BASELINE) validateSnapshotName(name);
  const m = readMeta(home, id, name);
  if (!m) {
    if (name === BASELINE) return null;
    throw new PyroError("SNAPSHOT_NOT_FOUND", `no snapshot "${name}"`, {
      hint: "`pyro workspace snapshot list ID`",
    });
  }
  const path = dataPath(home, id, name, m.format);
  if (!existsSync(path)) {
    throw new PyroError("SNAPSHOT_CORRUPT", `snapshot "${name}" has lost its data file`, {
      details: { snapshot: name },
    });
  }
  return {
    name,
    format: m.format,
    path,
    recorded: m.digest ? { digest: m.digest, image_bytes: m.image_bytes } : null,
  };
}

/** A guest workspace's legacy baseline tar, once a reset has replaced it by an image. */
export function dropLegacyBaselineTar(home: string, id: string): void {
  rmSync(dataPath(home, id, BASELINE, "tar"), { force: true });
}
