/**
 * Record access under locks, reference resolution, and repair of records whose supervisor
 * died. A corrupt record is reported for its own id only (WORKSPACE_CORRUPT) and never
 * breaks a lookup of another workspace. A pid is acted on only when its /proc cmdline names
 * the workspace id (pid reuse guard).
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { PyroError } from "../protocol/errors.ts";
import { removeTapNetwork } from "../vmm/net/host.ts";
import { isWorkspaceId } from "./ids.ts";
import { pidAlive, withLock } from "./lock.ts";
import { releaseNetwork } from "./network.ts";
import { locksDir, workspaceDir } from "./paths.ts";
import {
  corruptError,
  type LoadedRecord,
  loadRecord,
  readRecord,
  scanRecords,
  type WorkspaceRecord,
  writeRecord,
} from "./record.ts";

export const recordLock = (home: string, id: string) => join(locksDir(home), `${id}.lock`);
/** Held for the whole of a start, stop, reset or delete: one lifecycle change at a time per workspace. */
export const lifecycleLock = (home: string, id: string) => join(locksDir(home), `${id}.lifecycle.lock`);
/** Held while names are checked/claimed and while the active-VM count is checked. */
export const registryLock = (home: string) => join(locksDir(home), "registry.lock");

export async function updateRecord(
  home: string,
  id: string,
  fn: (r: WorkspaceRecord) => WorkspaceRecord,
): Promise<WorkspaceRecord> {
  return withLock(recordLock(home, id), () => {
    const r = readRecord(home, id);
    if (!r) throw new PyroError("WORKSPACE_NOT_FOUND", `workspace ${id} not found`);
    const next = fn(r);
    writeRecord(home, next);
    return next;
  });
}

export function removeWorkspaceFiles(home: string, id: string): void {
  // its tap network, if it has one (a corrupt record cannot say: removal is idempotent)
  const l = loadRecord(home, id);
  if (l && (!l.ok || l.record.net)) removeTapNetwork(id);
  rmSync(workspaceDir(home, id), { recursive: true, force: true });
  rmSync(recordLock(home, id), { force: true });
  // a caller waiting on it gets the lock on the removed file, then finds no record
  rmSync(lifecycleLock(home, id), { force: true });
}

/** How long a lifecycle change waits for another one on the same workspace (`PYRO_LIFECYCLE_WAIT_MS`). */
export function lifecycleWaitMs(env: Record<string, string | undefined>): number {
  const n = Number(env.PYRO_LIFECYCLE_WAIT_MS);
  return Number.isFinite(n) && n > 0 ? n : 60000;
}

/**
 * Run a start, stop, reset or delete of workspace `id` under its lifecycle lock: a concurrent
 * one waits its turn (so two never interleave, e.g. two supervisors for one workspace), and
 * past the wait bound fails with WORKSPACE_BUSY. `fn` must read the record itself: the call
 * before it may have changed or deleted it.
 */
export async function withLifecycle<T>(
  home: string,
  env: Record<string, string | undefined>,
  id: string,
  fn: () => Promise<T>,
): Promise<T> {
  const waitMs = lifecycleWaitMs(env);
  let entered = false;
  try {
    return await withLock(
      lifecycleLock(home, id),
      () => {
        entered = true;
        return fn();
      },
      waitMs,
    );
  } catch (err) {
    // only our own wait: a LOCK_TIMEOUT from inside fn stays what it is
    if (entered || !(err instanceof PyroError && err.code === "LOCK_TIMEOUT")) throw err;
    throw new PyroError(
      "WORKSPACE_BUSY",
      `workspace ${id} is busy: another start, stop, reset or delete of it has run for over ${Math.round(waitMs / 1000)} s`,
      { details: { workspace_id: id }, hint: "try again when it has finished" },
    );
  }
}

/** Is `pid` a live process of workspace `id`? (its cmdline names the id: guards against pid reuse) */
export function pidOfWorkspace(pid: unknown, id: string): pid is number {
  if (typeof pid !== "number" || !pidAlive(pid)) return false;
  try {
    return (readFileSync(`/proc/${pid}/cmdline`, "utf8") as string).includes(id);
  } catch {
    return false;
  }
}

/** Is the record's supervisor really running? */
export function supervisorAlive(r: WorkspaceRecord): boolean {
  return pidOfWorkspace(r.supervisor_pid, r.workspace_id);
}

/**
 * Bring a record in line with reality: a "started" workspace whose supervisor is gone is
 * stopped, and a VMM it left behind (should pdeathsig have failed) is killed.
 */
export async function repairRecord(home: string, r: WorkspaceRecord): Promise<WorkspaceRecord> {
  if (r.state !== "started" || supervisorAlive(r)) return r;
  if (pidOfWorkspace(r.vmm_pid, r.workspace_id)) {
    try {
      process.kill(r.vmm_pid as number, "SIGKILL");
    } catch {}
  }
  // the tap and nftables table a dead supervisor left (named in the record before they existed)
  if (r.net) releaseNetwork(home, r.workspace_id);
  return updateRecord(home, r.workspace_id, (cur) =>
    cur.state === "started" && !supervisorAlive(cur)
      ? {
          ...cur,
          state: "stopped",
          stop_reason: `supervisor died unexpectedly (pid ${cur.supervisor_pid ?? "?"}); the machine was stopped`,
          supervisor_pid: null,
          vmm_pid: null,
        }
      : cur,
  );
}

/** Find a workspace by id or unique name; a corrupt record is returned as such (delete needs it). */
export function lookupWorkspace(home: string, ref: string): LoadedRecord {
  if (isWorkspaceId(ref)) {
    const l = loadRecord(home, ref);
    if (l) return l;
  } else {
    const { records, corrupt } = scanRecords(home);
    const match = records.find((r) => r.name === ref);
    if (match) return { ok: true, record: match };
    const bad = corrupt.find((c) => c.name === ref);
    if (bad) return { ok: false, corrupt: bad };
  }
  throw new PyroError("WORKSPACE_NOT_FOUND", `no workspace "${ref}"`, {
    hint: "`pyro workspace list` shows what exists",
  });
}

/** Find a workspace by id or unique name; a corrupt one is WORKSPACE_CORRUPT. */
export function findRecord(home: string, ref: string): WorkspaceRecord {
  const l = lookupWorkspace(home, ref);
  if (!l.ok) throw corruptError(l.corrupt);
  return l.record;
}

export async function resolveWorkspace(home: string, ref: string): Promise<WorkspaceRecord> {
  return repairRecord(home, findRecord(home, ref));
}

export function workspaceExists(home: string, id: string): boolean {
  return existsSync(workspaceDir(home, id));
}

/**
 * Refuse a name held by another workspace (call under the registry lock). A corrupt record
 * keeps the name its raw JSON still shows until it is deleted.
 */
export function checkNameFree(home: string, name: string, exceptId?: string): void {
  const { records, corrupt } = scanRecords(home);
  const holder = [...records, ...corrupt].find((r) => r.name === name && r.workspace_id !== exceptId);
  if (!holder) return;
  const isCorrupt = !("state" in holder);
  throw new PyroError("NAME_CONFLICT", `a workspace named "${name}" already exists`, {
    hint: isCorrupt
      ? `its record is corrupt: \`pyro workspace delete ${holder.workspace_id}\` removes it`
      : undefined,
  });
}
