/**
 * Auto-pause (`auto_pause_after_seconds`, src/manager/auto-pause.ts): the supervisor pauses its
 * workspace once it has been idle that long, through the same path as `sup.pause`.
 *
 * Decisions (docs/public-contract.md "Auto-pause"):
 * - Activity is any client call that reaches this supervisor — exec, file, diff, patch,
 *   archive, shell and service calls — from when it starts until its answer is sent; the idle
 *   time counts from the end of the last one (or from when the machine came up). Calls that
 *   only look (`sup.status`, the shell and port lists, `ping`) and the lifecycle requests do
 *   not count, so `workspace status` / `list` can watch a workspace without keeping it awake.
 * - Never paused while something would be lost or cut off by the pause: a call in flight, a
 *   shell whose process still runs, a service that is starting or ready, a detached exec that
 *   runs, a published port; nor while a create or start is under way (`in_progress`) or any
 *   other lifecycle operation (snapshot, reset, stop, ...) holds the workspace's lifecycle
 *   lock. Background processes started by an exec (`setsid`, `&`) are not tracked: they are
 *   frozen with the machine and continue on resume.
 * - The setting is read from the record at every check, so `workspace update` changes it on a
 *   running workspace; a machine that cannot save its state never auto-pauses.
 * - The supervisor takes the lifecycle lock (non-blocking) and keeps it until it exits: a client
 *   that raced the pause waits on that lock, then finds the workspace paused and resumes it.
 */
import { holdLockUntilExit } from "../base/lock.ts";
import { readRecord } from "../manager/record.ts";
import { lifecycleLock } from "../manager/store.ts";
import type { ServerStream } from "../protocol/connection.ts";
import { log } from "./log.ts";

/** Requests that only look, or end the supervisor themselves: not activity. */
export const QUIET_OPS: ReadonlySet<string> = new Set([
  "ping",
  "sup.status",
  "sup.shell.list",
  "sup.forward.list",
  "sup.stop",
  "sup.pause",
  "sup.delete",
]);

const CHECK_INTERVAL_MS = 1000;

export interface IdleOptions {
  /** whether this machine can save its state at all (VmHandle.saveState) */
  canPause: boolean;
  /** why the workspace must stay up now (a live shell, a running service, ...), or null */
  busy: () => string | null;
  /** pause it now (called once, with the lifecycle lock held until the process exits) */
  pause: (why: string) => void;
  /** the setting and whether a create/start is under way (default: the record) */
  setting?: () => { seconds: number | null; inProgress: boolean } | null;
  /** take the lifecycle lock without waiting and keep it; false when another process holds it */
  tryLock?: () => boolean;
  now?: () => number;
}

export type IdleVerdict = { pause: true; idleMs: number; seconds: number } | { pause: false; why: string };

export class IdleTracker {
  private inFlight = 0;
  private last: number;
  private timer: ReturnType<typeof setInterval> | null = null;
  private done = false;
  private readonly now: () => number;

  constructor(
    private readonly home: string,
    private readonly id: string,
    private readonly opts: IdleOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.last = this.now();
  }

  /** Count a client call as activity from now until it is answered (or its client goes). */
  track(client: ServerStream): void {
    if (QUIET_OPS.has(String(client.request.op ?? ""))) return;
    this.inFlight++;
    this.last = this.now();
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.inFlight--;
      this.last = this.now();
    };
    const result = client.result.bind(client);
    const fail = client.fail.bind(client);
    client.result = (m) => {
      end();
      result(m);
    };
    client.fail = (e) => {
      end();
      fail(e);
    };
    client.onAbandon(end);
  }

  /** Whether to pause now, and if not, why not. */
  verdict(): IdleVerdict {
    const s = this.opts.setting ? this.opts.setting() : this.fromRecord();
    if (!s?.seconds) return { pause: false, why: "auto-pause is off" };
    if (!this.opts.canPause) return { pause: false, why: "this machine cannot be paused" };
    if (s.inProgress) return { pause: false, why: "a create or start is under way" };
    if (this.inFlight > 0) return { pause: false, why: `${this.inFlight} call(s) in flight` };
    const busy = this.opts.busy();
    if (busy) return { pause: false, why: busy };
    const idleMs = this.now() - this.last;
    if (idleMs < s.seconds * 1000) return { pause: false, why: `idle for ${idleMs} ms of ${s.seconds} s` };
    return { pause: true, idleMs, seconds: s.seconds };
  }

  /** One check: pauses when the verdict says so and no lifecycle operation holds the workspace. */
  check(): boolean {
    if (this.done) return false;
    const v = this.verdict();
    if (!v.pause) return false;
    if (!(this.opts.tryLock ?? (() => holdLockUntilExit(lifecycleLock(this.home, this.id))))()) return false;
    this.done = true;
    this.stop();
    const why = `idle for ${Math.round(v.idleMs / 1000)} s (auto_pause_after_seconds ${v.seconds})`;
    log(`auto-pause: ${why}`);
    this.opts.pause(why);
    return true;
  }

  start(intervalMs = CHECK_INTERVAL_MS): void {
    this.timer ??= setInterval(() => {
      try {
        this.check();
      } catch (err) {
        log(`auto-pause check failed: ${(err as Error).message}`);
      }
    }, intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private fromRecord(): { seconds: number | null; inProgress: boolean } | null {
    const r = readRecord(this.home, this.id);
    if (!r) return null;
    return { seconds: r.auto_pause_after_seconds ?? null, inProgress: !!r.in_progress };
  }
}
