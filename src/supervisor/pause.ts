/**
 * Pause (`sup.pause`): save the running machine's full state to the workspace's paused/
 * directory so `resume` continues it where it was (src/manager/paused-state.ts owns the files).
 * Order, and why:
 * 1. a guest `sync`, so the data disk is consistent even if the saved state is later lost or
 *    refused (resume then cold-boots from the disk);
 * 2. what the supervisor runs on the agent — shells, services, detached execs — is kept:
 *    `sys.keep` names them and the agent holds them from its answer on (guest/keep.ts), then
 *    the supervisor takes their state (suspend(): buffers, cursors, records, restart state)
 *    and writes nothing more for them; the state goes into the pause as sessions.json
 *    (hashed in state.json: src/manager/paused-state.ts) and the resumed machine's
 *    supervisor adopts them from it (main.ts). A pause that fails after this ends them as a
 *    stop would, with the reason;
 * 3. the agent connection is closed and the guest given a moment to see the host go: its
 *    agent then waits for a fresh connection (guest/virtio-serial.ts), which is what the
 *    resumed machine's new supervisor opens;
 * 4. the VMM stops the guest and streams its state to `paused.tmp/memory`; the hash is
 *    recorded and the directory renamed to `paused/` (ending.ts then stops the VMM and
 *    writes the `paused` record).
 */
import type { Machine } from "../manager/machine.ts";
import {
  beginPausedState,
  commitPausedState,
  readPausedSessions,
  writePausedSessions,
} from "../manager/paused-state.ts";
import { readRecord } from "../manager/record.ts";
import { updateRecord } from "../manager/store.ts";
import { call } from "../protocol/call.ts";
import { PyroError } from "../protocol/errors.ts";
import type { SavedExec } from "./detached.ts";
import { log } from "./log.ts";
import type { SavedService } from "./services.ts";
import type { SavedShell } from "./shells.ts";

/** Long enough to write a few GiB of RAM to a loaded disk. */
const SAVE_DEADLINE_MS = 300_000;
/** How long the guest gets to notice the host closed the port before it is stopped. */
const DISCONNECT_SETTLE_MS = 500;

/** sessions.json: the supervisor's state for what a pause kept running. */
export interface PausedSessions {
  format: 1;
  shells: { shells: SavedShell[]; closed: string[] };
  services: SavedService[];
  execs: SavedExec[];
}

/** The sessions the paused state kept (hash-checked), null when it kept none, or why they are unusable. */
export function keptSessions(
  home: string,
  id: string,
): null | { ok: true; sessions: PausedSessions } | { ok: false; reason: string } {
  const r = readPausedSessions(home, id);
  if (!r || !r.ok) return r;
  const d = r.data as Partial<PausedSessions> | null;
  if (
    d?.format !== 1 ||
    !Array.isArray(d.shells?.shells) ||
    !Array.isArray(d.shells?.closed) ||
    !Array.isArray(d.services) ||
    !Array.isArray(d.execs)
  )
    return { ok: false, reason: "the saved sessions file has an unknown format" };
  return { ok: true, sessions: d as PausedSessions };
}

/** What a pause keeps running (main.ts gives the supervisor's shells, services and execs). */
export interface SessionKeeper {
  /** the names sys.keep takes */
  names(): { shell_ids: string[]; service_names: string[]; exec_pids: number[] };
  /** their state, handed over (nothing more is written for them here) */
  suspend(): unknown;
  /** the pause failed after suspend(): record them ended */
  endSuspended(reason: string): void;
}
let keeper: SessionKeeper | null = null;
export function keepSessionsWith(k: SessionKeeper): void {
  keeper = k;
}

/** `by`: a `sup.pause` request, or auto-pause after idleness (idle.ts); the record keeps it as paused_by. */
export async function saveMachine(
  home: string,
  id: string,
  machine: Machine,
  by: "request" | "idle" = "request",
): Promise<void> {
  const save = machine.handle.saveState?.bind(machine.handle);
  if (!save) throw new PyroError("BACKEND_UNAVAILABLE", `the ${machine.handle.backend} backend cannot pause`);
  const record = readRecord(home, id);
  if (!record) throw new PyroError("WORKSPACE_NOT_FOUND", `no workspace ${id}`);
  await Promise.race([
    call(machine.conn, { op: "exec", argv: ["sync"], timeout_ms: 20_000 }).catch(() => {}),
    Bun.sleep(25_000),
  ]);
  let sessions: unknown = null;
  let kept = 0;
  if (keeper) {
    const names = keeper.names();
    const any = names.shell_ids.length + names.service_names.length + names.exec_pids.length > 0;
    if (any) {
      kept = await Promise.race([
        call(machine.conn, { op: "sys.keep", ...names }).then(
          (r) => r.kept,
          (err: Error) => {
            log(`sys.keep failed (the sessions end with the connection): ${err.message}`);
            return 0;
          },
        ),
        Bun.sleep(15_000).then(() => 0),
      ]);
    }
    sessions = keeper.suspend();
  }
  machine.conn.close();
  try {
    await Bun.sleep(DISCONNECT_SETTLE_MS);
    const memory = beginPausedState(home, id);
    const sessionsSha = sessions ? writePausedSessions(home, id, sessions) : undefined;
    const t0 = Date.now();
    const saved = await save(memory, Date.now() + SAVE_DEADLINE_MS);
    commitPausedState(home, record, saved, sessionsSha);
    log(`paused: ${saved.bytes} bytes of machine state in ${Date.now() - t0} ms; ${kept} sessions kept`);
  } catch (err) {
    keeper?.endSuspended(`the pause failed: ${(err as Error).message}`);
    throw err;
  }
  await updateRecord(home, id, (r) => ({ ...r, paused_by: by })).catch(() => {});
}
