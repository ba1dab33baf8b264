/**
 * Record access under locks, reference resolution, and repair of records whose supervisor
 * died. A corrupt record is reported for its own id only (WORKSPACE_CORRUPT) and never
 * breaks a lookup of another workspace. A pid is acted on only when its /proc cmdline names
 * the workspace id (pid reuse guard).
 */
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { processStart } from "../base/proc.ts";
import { PyroError } from "../protocol/errors.ts";
import { removeTapNetwork } from "../vmm/net/host.ts";
import { sweepTemps } from "./disk-image.ts";
import { isWorkspaceId } from "./ids.ts";
import { pidAlive, withLock } from "./lock.ts";
import { releaseNetwork } from "./network.ts";
import { locksDir, READY_FILE, runDir, supervisorSocket, workspaceDir, workspacesDir } from "./paths.ts";
import {
  corruptError,
  type LoadedRecord,
  loadRecord,
  NEW_PREFIX,
  readRecord,
  scanRecords,
  TRASH_PREFIX,
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

/**
 * Remove a workspace: its directory is first renamed to `.trash-<id>-<pid>` (one step, so a
 * crash never leaves half a workspace that still looks like one), then deleted.
 */
export function removeWorkspaceFiles(home: string, id: string): void {
  // its tap network, if it has one (a corrupt record cannot say: removal is idempotent)
  const l = loadRecord(home, id);
  if (l && (!l.ok || l.record.net)) removeTapNetwork(id);
  const trash = join(workspacesDir(home), `${TRASH_PREFIX}${id}-${process.pid}`);
  try {
    renameSync(workspaceDir(home, id), trash);
    rmSync(trash, { recursive: true, force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  rmSync(recordLock(home, id), { force: true });
  // a caller waiting on it gets the lock on the removed file, then finds no record
  rmSync(lifecycleLock(home, id), { force: true });
}

/**
 * Remove what crashed creates and deletes left in workspaces/: staging directories (only
 * made under the registry lock, so under it any one seen is dead) and trash. Call under the
 * registry lock.
 */
export function sweepDebris(home: string): void {
  let names: string[];
  try {
    names = readdirSync(workspacesDir(home));
  } catch {
    return;
  }
  for (const n of names) {
    if (n.startsWith(NEW_PREFIX) || n.startsWith(TRASH_PREFIX))
      rmSync(join(workspacesDir(home), n), { recursive: true, force: true });
  }
}

export { processStart };

export type InProgress = NonNullable<WorkspaceRecord["in_progress"]>;

/** This process as the owner of a create or start. */
export function inProgress(op: InProgress["op"]): InProgress {
  return { op, pid: process.pid, pid_start: processStart(process.pid) ?? "?" };
}

/** Is the process that began a create or start still running (the same process, not a reused pid)? */
export function ownerAlive(p: InProgress): boolean {
  return processStart(p.pid) === p.pid_start;
}

/** A create whose process died before it finished (judged on `r` as given: see `confirmed`). */
export const createAbandoned = (r: WorkspaceRecord): boolean =>
  r.in_progress?.op === "create" && !ownerAlive(r.in_progress);

/** What a verdict on a record's processes rests on: its state and the processes it names. */
const owners = (r: WorkspaceRecord) =>
  JSON.stringify([r.state, r.supervisor_pid ?? null, r.vmm_pid ?? null, r.in_progress ?? null]);

/**
 * Judge a record by its processes (`judge`: a process it names is gone), then read it again:
 * the verdict stands only when the record did not change meanwhile; else the new record is
 * judged. The order is the point: processes first, the record after. A record read before
 * the liveness check may be stale — a create's process can clear `in_progress`, answer
 * `started` and exit in between, and judged on the stale record that finished create looked
 * abandoned and was discarded (docs/reliability.md, the vanished directory). A process seen
 * dead cannot write the record any more, so a record read after that and unchanged is the
 * truth. `record` is null when the workspace was removed meanwhile; a record that turned
 * corrupt is left to its own report (no verdict).
 */
export function confirmed(
  home: string,
  r: WorkspaceRecord,
  judge: (r: WorkspaceRecord) => boolean,
): { record: WorkspaceRecord | null; verdict: boolean } {
  for (let i = 0; i < 20; i++) {
    if (!judge(r)) return { record: r, verdict: false };
    const l = loadRecord(home, r.workspace_id);
    if (!l) return { record: null, verdict: false };
    if (!l.ok) return { record: r, verdict: false };
    if (owners(l.record) === owners(r)) return { record: l.record, verdict: true };
    r = l.record;
  }
  return { record: r, verdict: false }; // changing under us all along: someone is at work on it
}

/** Has a workspace's TTL run out? (a running one's supervisor ends it itself; repairRecord the rest) */
export function expired(r: WorkspaceRecord, at = Date.now()): boolean {
  return r.expires_at !== null && Date.parse(r.expires_at) <= at;
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
 * Bring a record in line with reality; null when the workspace no longer exists after it.
 * - A create whose process died before it finished is discarded: its supervisor and VMM are
 *   killed and its files removed (nobody was told the workspace exists).
 * - A `started` workspace whose supervisor is gone, or a `created` one (a start under way)
 *   whose starting process and supervisor are both gone, is stopped, and a VMM it left
 *   behind (should pdeathsig have failed) is killed.
 * - A stopped workspace whose TTL has run out is deleted, without booting it (the TTL counts
 *   while stopped; a running workspace's supervisor ends it itself).
 */
export async function repairRecord(home: string, r: WorkspaceRecord): Promise<WorkspaceRecord | null> {
  const create = confirmed(home, r, createAbandoned);
  if (!create.record) return null; // removed meanwhile
  if (create.verdict) {
    await discardWorkspace(home, create.record);
    return null;
  }
  const dead = (x: WorkspaceRecord) =>
    !supervisorAlive(x) &&
    (x.state === "started" || (x.state === "created" && !(x.in_progress && ownerAlive(x.in_progress))));
  const judged = confirmed(home, create.record, dead);
  if (!judged.record) return null;
  r = judged.record;
  let cur: WorkspaceRecord = r;
  if (judged.verdict) {
    if (pidOfWorkspace(r.vmm_pid, r.workspace_id)) {
      try {
        process.kill(r.vmm_pid as number, "SIGKILL");
      } catch {}
    }
    // the tap and nftables table a dead supervisor left (named in the record before they existed)
    if (r.net) releaseNetwork(home, r.workspace_id);
    clearRunMarks(home, r.workspace_id);
    cur = await updateRecord(home, r.workspace_id, (x) =>
      dead(x)
        ? {
            ...x,
            state: "stopped",
            stop_reason:
              x.state === "started"
                ? `supervisor died unexpectedly (pid ${x.supervisor_pid ?? "?"}); the machine was stopped`
                : "the start was interrupted (its process died); the machine was stopped",
            supervisor_pid: null,
            vmm_pid: null,
            in_progress: null,
          }
        : x,
    );
  }
  // a disk or root a killed reset was building (`.new-<pid>`), a killed writer's `.tmp-<pid>`:
  // removed once its writer is dead, not left until the next reset or snapshot
  sweepTemps(workspaceDir(home, cur.workspace_id));
  if (cur.state !== "started" && cur.state !== "created" && expired(cur)) {
    removeWorkspaceFiles(home, cur.workspace_id);
    return null;
  }
  return cur;
}

/**
 * Remove a dead supervisor's socket and ready mark, and the sockets its VMM left (QEMU unlinks
 * its QMP and agent sockets only on a clean exit; killed with its supervisor, it leaves them):
 * a stopped workspace has none of them.
 */
export function clearRunMarks(home: string, id: string): void {
  rmSync(supervisorSocket(home, id), { force: true });
  rmSync(join(runDir(home, id), READY_FILE), { force: true });
  try {
    for (const e of readdirSync(runDir(home, id), { withFileTypes: true }))
      if (e.isSocket()) rmSync(join(runDir(home, id), e.name), { force: true });
  } catch {}
}

/** Kill an abandoned create's supervisor and VMM (verified by cmdline), then remove its files. */
async function discardWorkspace(home: string, r: WorkspaceRecord): Promise<void> {
  const pids = [r.supervisor_pid, r.vmm_pid].filter((x) => pidOfWorkspace(x, r.workspace_id)) as number[];
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  const deadline = Date.now() + 5000;
  while (pids.some((x) => pidOfWorkspace(x, r.workspace_id)) && Date.now() < deadline) await Bun.sleep(20);
  if (r.net) releaseNetwork(home, r.workspace_id);
  removeWorkspaceFiles(home, r.workspace_id);
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
  const r = findRecord(home, ref);
  const cur = await repairRecord(home, r);
  if (cur) return cur;
  const why = createAbandoned(r)
    ? "its create was interrupted"
    : expired(r)
      ? "its ttl ran out"
      : "it was deleted meanwhile";
  throw new PyroError("WORKSPACE_NOT_FOUND", `workspace ${r.workspace_id} no longer exists: ${why}`, {
    details: { workspace_id: r.workspace_id },
    hint: "`pyro workspace list` shows what exists",
  });
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
