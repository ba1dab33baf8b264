/**
 * Pause and resume: a running workspace's machine is saved whole to the host (RAM + device
 * state, src/manager/paused-state.ts) and its VMM and supervisor end, freeing the RAM; resume
 * restores the machine and its processes carry on where they were. Stop/start stay a clean
 * power-off and a boot.
 *
 * Invariants:
 * - `paused` means: no supervisor, no VMM, a saved state under paused/ (hash-checked before
 *   use); a paused workspace holds no machine slot (PYRO_MAX_ACTIVE_VMS).
 * - Resume uses the state only when it verifies; otherwise (or when the restore fails) the
 *   state is dropped and the workspace boots cold from its disk (synced at pause), and the
 *   result says so (`resumed_from: "cold_boot"` with the reason). It never runs a state twice.
 * - Pause needs a machine whose VMM can save state (`VmHandle.saveState`: QEMU, Firecracker);
 *   the supervisor, which holds the handle, refuses others (host compat) with
 *   BACKEND_UNAVAILABLE before anything changes — a capability check, not a backend name.
 */
import { PyroError } from "../protocol/errors.ts";
import { callWorkspace } from "./client.ts";
import type { Ctx } from "./context.ts";
import { discardPausedState, readPausedMeta } from "./paused-state.ts";
import { readRecord, type WorkspaceRecord } from "./record.ts";
import { findRecord, repairRecord, resolveWorkspace, updateRecord, withLifecycle } from "./store.ts";
import { startWorkspaceLocked } from "./workspaces.ts";

/** Saving a few GiB of RAM to a loaded disk, plus the guest sync before it. */
const PAUSE_WAIT_MS = 360_000;

export interface PauseResult {
  record: WorkspaceRecord;
  memory_bytes: number;
}

export async function pauseWorkspace(ctx: Ctx, ref: string): Promise<PauseResult> {
  const id = findRecord(ctx.home, ref).workspace_id;
  return withLifecycle(ctx.home, ctx.env, id, async () => {
    const r = await resolveWorkspace(ctx.home, id);
    if (r.state === "paused") return { record: r, memory_bytes: readPausedMeta(ctx.home, id)?.bytes ?? 0 };
    try {
      await callWorkspace(ctx.home, r, { op: "sup.pause" });
    } catch (err) {
      if (err instanceof PyroError && err.code === "BACKEND_UNAVAILABLE") {
        throw new PyroError("BACKEND_UNAVAILABLE", `the ${r.backend} backend cannot pause a workspace`, {
          hint: "pause needs a VMM that saves machine state (qemu or firecracker); `pyro workspace stop` powers it off instead",
          cause: err,
        });
      }
      throw err;
    }
    const deadline = Date.now() + PAUSE_WAIT_MS;
    for (;;) {
      const raw = readRecord(ctx.home, id);
      const cur = raw ? await repairRecord(ctx.home, raw) : null;
      if (!cur) throw new PyroError("WORKSPACE_NOT_FOUND", `workspace ${id} went away while pausing`);
      if (cur.state === "paused") {
        return { record: cur, memory_bytes: readPausedMeta(ctx.home, id)?.bytes ?? 0 };
      }
      if (cur.state !== "started") {
        throw new PyroError(
          "VMM_FAILED",
          `the pause failed and the workspace stopped: ${cur.stop_reason ?? "?"}`,
          {
            hint: `\`pyro workspace start ${cur.name ?? id}\` boots it again from its disk`,
          },
        );
      }
      if (Date.now() > deadline) {
        throw new PyroError("VMM_FAILED", "the workspace did not finish pausing in time");
      }
      await Bun.sleep(50);
    }
  });
}

export interface ResumeResult {
  record: WorkspaceRecord;
  resumed_from: "memory" | "cold_boot" | "already_running";
  note: string | null;
}

/** `by`: what asked (workspace_resume, or an operation that needed the machine); kept as resumed_by. */
export async function resumeWorkspace(ctx: Ctx, ref: string, by = "workspace_resume"): Promise<ResumeResult> {
  const id = findRecord(ctx.home, ref).workspace_id;
  const mark = (record: WorkspaceRecord) =>
    updateRecord(ctx.home, id, (r) => ({ ...r, resumed_at: new Date().toISOString(), resumed_by: by })).catch(
      () => record,
    );
  return withLifecycle(ctx.home, ctx.env, id, async () => {
    const r = await resolveWorkspace(ctx.home, id);
    if (r.state === "started") return { record: r, resumed_from: "already_running" as const, note: null };
    if (r.state !== "paused") {
      const name = r.name ?? id;
      throw new PyroError("WORKSPACE_NOT_STARTED", `workspace ${name} is ${r.state}, not paused`, {
        hint: `\`pyro workspace start ${name}\` boots it`,
      });
    }
    let note: string;
    try {
      const record = await mark(await startWorkspaceLocked(ctx, id, { resume: true }));
      return { record, resumed_from: "memory" as const, note: null };
    } catch (err) {
      // Refused before anything was tried (the machine limit): still paused, state kept.
      if (readRecord(ctx.home, id)?.state === "paused") throw err;
      note = `the saved state could not be restored (${(err as Error).message}); booted from the disk instead`;
    }
    ctx.progress(note);
    // what the pause kept running (shells, services, detached execs) is gone with the state
    discardPausedState(ctx.home, id, note);
    const record = await mark(await startWorkspaceLocked(ctx, id));
    return { record, resumed_from: "cold_boot" as const, note };
  });
}
