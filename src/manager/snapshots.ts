/**
 * Named snapshots of /workspace, kept on the host (workspaces/<id>/snapshots/NAME.tar) so a
 * reset can throw the guest's disks away. `baseline` is implicit: captured at create.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { PyroError } from "../protocol/errors.ts";
import { writeFileAtomic } from "./atomic.ts";
import { NAME_RE } from "./ids.ts";
import { workspaceDir } from "./paths.ts";
import type { WorkspaceRecord } from "./record.ts";
import { exportToTarFile } from "./transfer.ts";

export const BASELINE = "baseline";
export const snapshotsDir = (home: string, id: string) => join(workspaceDir(home, id), "snapshots");
export const baselineTar = (home: string, id: string) => join(workspaceDir(home, id), "baseline.tar");
export const snapshotTar = (home: string, id: string, name: string) =>
  join(snapshotsDir(home, id), `${name}.tar`);

export interface SnapshotInfo {
  name: string;
  created_at: string;
  size_bytes: number;
  kind: "baseline" | "named";
}

export function validateSnapshotName(name: string): string {
  if (!NAME_RE.test(name))
    throw new PyroError("INVALID_INPUT", `invalid snapshot name "${name}": use [a-z0-9][a-z0-9._-]{0,62}`);
  if (name === BASELINE) throw new PyroError("INVALID_INPUT", `"${BASELINE}" is reserved: it always exists`);
  return name;
}

export async function captureBaselineTar(home: string, r: WorkspaceRecord): Promise<number> {
  return exportToTarFile(home, r, "/workspace", baselineTar(home, r.workspace_id));
}

export async function createSnapshot(home: string, r: WorkspaceRecord, name: string): Promise<SnapshotInfo> {
  validateSnapshotName(name);
  const file = snapshotTar(home, r.workspace_id, name);
  if (existsSync(file))
    throw new PyroError("ALREADY_EXISTS", `snapshot "${name}" already exists; delete it first`);
  const size = await exportToTarFile(home, r, "/workspace", file);
  const info: SnapshotInfo = { name, created_at: new Date().toISOString(), size_bytes: size, kind: "named" };
  writeFileAtomic(`${file.slice(0, -4)}.json`, JSON.stringify(info));
  return info;
}

export function listSnapshots(home: string, id: string): SnapshotInfo[] {
  const out: SnapshotInfo[] = [];
  // The baseline always exists; an unseeded workspace's baseline is empty and has no tar.
  const base = baselineTar(home, id);
  const st = existsSync(base) ? statSync(base) : null;
  out.push({
    name: BASELINE,
    created_at: st ? st.mtime.toISOString() : "",
    size_bytes: st?.size ?? 0,
    kind: "baseline",
  });
  const dir = snapshotsDir(home, id);
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith(".json")) continue;
    try {
      out.push(JSON.parse(readFileSync(join(dir, f), "utf8")) as SnapshotInfo);
    } catch {}
  }
  return out;
}

export function deleteSnapshot(home: string, id: string, name: string): void {
  if (name === BASELINE) throw new PyroError("INVALID_INPUT", "the baseline snapshot cannot be deleted");
  validateSnapshotName(name);
  const file = snapshotTar(home, id, name);
  if (!existsSync(file)) throw new PyroError("SNAPSHOT_NOT_FOUND", `no snapshot "${name}"`);
  rmSync(file, { force: true });
  rmSync(`${file.slice(0, -4)}.json`, { force: true });
}

/** The tar a reset restores from. */
export function snapshotSource(home: string, id: string, name: string): string | null {
  if (name === BASELINE) return existsSync(baselineTar(home, id)) ? baselineTar(home, id) : null;
  const file = snapshotTar(home, id, name);
  if (!existsSync(file))
    throw new PyroError("SNAPSHOT_NOT_FOUND", `no snapshot "${name}"`, {
      hint: "`pyro workspace snapshot list ID`",
    });
  return file;
}
