/** Record access under locks, reference resolution, and repair of records whose supervisor died. */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { PyroError } from "../protocol/errors.ts";
import { isWorkspaceId } from "./ids.ts";
import { pidAlive, withLock } from "./lock.ts";
import { locksDir, workspaceDir } from "./paths.ts";
import { listRecords, readRecord, type WorkspaceRecord, writeRecord } from "./record.ts";

export const recordLock = (home: string, id: string) => join(locksDir(home), `${id}.lock`);
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
  rmSync(workspaceDir(home, id), { recursive: true, force: true });
  rmSync(recordLock(home, id), { force: true });
}

/** Is the record's supervisor really running? (pid reuse is guarded by the pid's cmdline.) */
export function supervisorAlive(r: WorkspaceRecord): boolean {
  const pid = r.supervisor_pid;
  if (!pid || !pidAlive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8") as string;
    return cmdline.includes(r.workspace_id);
  } catch {
    return false;
  }
}

/**
 * Bring a record in line with reality: a "started" workspace whose supervisor is gone is
 * stopped, and a VMM it left behind (should pdeathsig have failed) is killed.
 */
export async function repairRecord(home: string, r: WorkspaceRecord): Promise<WorkspaceRecord> {
  if (r.state !== "started" || supervisorAlive(r)) return r;
  if (r.vmm_pid && pidAlive(r.vmm_pid)) {
    try {
      const cmdline = readFileSync(`/proc/${r.vmm_pid}/cmdline`, "utf8") as string;
      if (cmdline.includes(r.workspace_id)) process.kill(r.vmm_pid, "SIGKILL");
    } catch {}
  }
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

/** Find a workspace by id or unique name. */
export function findRecord(home: string, ref: string): WorkspaceRecord {
  if (isWorkspaceId(ref)) {
    const r = readRecord(home, ref);
    if (r) return r;
  } else {
    const match = listRecords(home).find((r) => r.name === ref);
    if (match) return match;
  }
  throw new PyroError("WORKSPACE_NOT_FOUND", `no workspace "${ref}"`, {
    hint: "`pyro workspace list` shows what exists",
  });
}

export async function resolveWorkspace(home: string, ref: string): Promise<WorkspaceRecord> {
  return repairRecord(home, findRecord(home, ref));
}

export function workspaceExists(home: string, id: string): boolean {
  return existsSync(workspaceDir(home, id));
}
