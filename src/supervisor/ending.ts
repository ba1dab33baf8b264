/**
 * How a supervisor ends. Whatever asks first ends it — `sup.stop` / `sup.delete`, the TTL,
 * a signal, the machine exiting, the agent connection closing — and the rest are no-ops.
 *
 * Invariants:
 * - The end runs once: stop serving clients, shut the machine down (or save its state and
 *   stop the VMM, for a pause), write the record's final state (`stopped` with the reason, or
 *   `paused`; pids and the unresponsive mark cleared), remove the workspace's files if asked
 *   (TTL expiry, delete), then exit.
 * - The VMM never outlives the supervisor: the end shuts it down before exiting, and a
 *   supervisor killed outright takes it along (the VMM runs under `setpriv --pdeathsig`;
 *   the host agent kills its process groups on SIGTERM).
 * - The TTL is the only background cleanup: expiry deletes the workspace (it is disposable
 *   by contract). Its timer is re-armed in steps of at most MAX_TIMER_MS (setTimeout takes a
 *   32-bit delay: a longer one fires at once), and each step re-reads the clock.
 * - A create whose process dies before it finished is abandoned: the supervisor notices
 *   (watchCreator) and ends with the workspace's files removed, so a killed
 *   `pyro workspace create` leaves no machine running.
 */
import { fault } from "../base/fault.ts";
import type { Machine } from "../manager/machine.ts";
import { readRecord } from "../manager/record.ts";
import { confirmed, createAbandoned, removeWorkspaceFiles, updateRecord } from "../manager/store.ts";
import { log } from "./log.ts";

/** The longest delay setTimeout honours (2^31 - 1 ms, ~24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** How often a supervisor checks that the process creating its workspace still runs. */
const CREATOR_POLL_MS = 250;

/**
 * Call `onGone` once if the workspace's create is abandoned: its creating process died before
 * clearing `in_progress`, or the record is gone. Stops watching when the create finishes.
 */
export function watchCreator(home: string, id: string, onGone: () => void): void {
  const timer = setInterval(() => {
    let gone: boolean;
    try {
      const r = readRecord(home, id);
      if (r && r.in_progress?.op !== "create") return clearInterval(timer);
      fault("creator.poll"); // test-only: hold here with a record that may go stale (test/vanished-create.test.ts)
      // the creator seen dead, then the record read again (store.ts confirmed): a creator that
      // cleared in_progress and exited after `r` was read finished its create
      const c = r ? confirmed(home, r, createAbandoned) : null;
      gone = !c?.record || c.verdict;
      if (c?.record && !gone && c.record.in_progress?.op !== "create") return clearInterval(timer);
    } catch {
      gone = false; // a record being rewritten or damaged: look again next time
    }
    if (gone) {
      clearInterval(timer);
      onGone();
    }
  }, CREATOR_POLL_MS);
}

export interface EndOptions {
  /** remove the workspace's files once the machine is down (delete, TTL expiry) */
  deleteAfter?: boolean;
  /**
   * Pause instead of powering off: `save` writes the machine's state (src/supervisor/pause.ts),
   * then the VMM is stopped without a guest shutdown and the record says `paused`. A save
   * that fails ends as a plain stop whose reason says why.
   */
  pause?: () => Promise<void>;
}

export class Ending {
  private ending = false;
  /** the end under way is a pause (closers leave what the pause keeps: src/supervisor/pause.ts) */
  pausing = false;
  private readonly closers: Array<(reason: string) => void> = [];

  constructor(
    private readonly home: string,
    private readonly id: string,
    private readonly machine: Machine,
  ) {
    machine.handle.exited.then((code) => this.end(`machine exited unexpectedly (code ${code})`));
    machine.conn.onClose(() => this.end("lost the agent connection"));
  }

  /** Run `close` first when the supervisor ends, with the reason (stop the client socket, end detached execs). */
  onEnd(close: (reason: string) => void): void {
    this.closers.push(close);
  }

  /** End the supervisor when the workspace's TTL runs out (at once if it already has). */
  armTtl(expiresAt: string | null | undefined): void {
    if (!expiresAt) return;
    const at = Date.parse(expiresAt);
    const step = () => {
      const ms = at - Date.now();
      if (ms <= 0) this.end("ttl expired", { deleteAfter: true });
      else setTimeout(step, Math.min(ms, MAX_TIMER_MS));
    };
    step();
  }

  /** End on SIGTERM, SIGINT and SIGHUP. */
  trapSignals(): void {
    for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const)
      process.on(sig, () => this.end(`supervisor got ${sig}`));
  }

  /** End once, for `reason` (the process exits when that is done); later calls do nothing. */
  end(reason: string, opts: EndOptions = {}): void {
    if (this.ending) return;
    this.ending = true;
    this.pausing = !!opts.pause;
    void this.run(reason, opts);
  }

  private async run(reason: string, opts: EndOptions): Promise<void> {
    log(`stopping: ${reason}`);
    for (const close of this.closers) close(reason);
    fault("supervisor.ending", () => this.machine.handle.pid);
    let why = reason;
    let paused = false;
    if (opts.pause) {
      try {
        await opts.pause();
        paused = true;
        await this.machine.handle.stop(5000).catch(() => {});
      } catch (err) {
        why = `pause failed: ${(err as Error).message}`;
        log(why);
      }
    }
    if (!paused) await this.machine.shutdown().catch(() => {});
    await updateRecord(this.home, this.id, (r) => ({
      ...r,
      state: paused ? "paused" : "stopped",
      stop_reason: paused ? null : why,
      agent_unresponsive_since: null,
      vm_status: null,
      supervisor_pid: null,
      vmm_pid: null,
    })).catch(() => {});
    if (opts.deleteAfter) removeWorkspaceFiles(this.home, this.id);
    process.exit(0);
  }
}
