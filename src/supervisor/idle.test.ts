/**
 * The auto-pause decision (idle.ts) with a fake clock and fake client streams: it pauses once,
 * only after the configured idle time with nothing in flight or running, counts a call from its
 * start to its answer (or its client's going), ignores calls that only look, and yields to a
 * lifecycle operation that holds the lock.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { holdLockUntilExit, withLock } from "../base/lock.ts";
import type { ServerStream } from "../protocol/connection.ts";
import { IdleTracker } from "./idle.ts";

function rig(seconds: number | null = 10) {
  let t = 1_000_000;
  const state = {
    seconds,
    inProgress: false,
    busy: null as string | null,
    locked: false,
    pauses: [] as string[],
  };
  const tracker = new IdleTracker("/nonexistent", "ws_test", {
    canPause: true,
    busy: () => state.busy,
    pause: (why) => state.pauses.push(why),
    setting: () => ({ seconds: state.seconds, inProgress: state.inProgress }),
    tryLock: () => !state.locked,
    now: () => t,
  });
  const advance = (ms: number) => {
    t += ms;
  };
  return { tracker, state, advance };
}

/** A stand-in for a client's stream: the methods the tracker wraps. */
function client(op: string) {
  const abandon: Array<() => void> = [];
  const c = {
    request: { op },
    answered: 0,
    result(_m: Record<string, unknown>) {
      c.answered++;
    },
    fail(_e: unknown) {
      c.answered++;
    },
    onAbandon(cb: () => void) {
      abandon.push(cb);
    },
    abandon: () => {
      for (const cb of abandon) cb();
    },
  };
  return c as typeof c & ServerStream;
}

describe("auto-pause decision", () => {
  test("pauses once after the idle time, not before", () => {
    const { tracker, state, advance } = rig(10);
    advance(9_999);
    expect(tracker.check()).toBe(false);
    advance(1);
    expect(tracker.check()).toBe(true);
    expect(state.pauses).toHaveLength(1);
    expect(state.pauses[0]).toContain("auto_pause_after_seconds 10");
    advance(60_000);
    expect(tracker.check()).toBe(false); // once
    expect(state.pauses).toHaveLength(1);
  });

  test("off (null or 0) never pauses; a setting made later applies, counted from the last activity", () => {
    const { tracker, state, advance } = rig(null);
    advance(3_600_000);
    expect(tracker.check()).toBe(false);
    state.seconds = 0;
    expect(tracker.check()).toBe(false);
    state.seconds = 30;
    expect(tracker.verdict().pause).toBe(true);
  });

  test("a call in flight keeps it up however long it runs; idle time counts from its answer", () => {
    const { tracker, state, advance } = rig(10);
    const c = client("exec");
    tracker.track(c);
    advance(60_000);
    expect(tracker.check()).toBe(false);
    expect(tracker.verdict()).toEqual({ pause: false, why: "1 call(s) in flight" });
    c.result({ exit_code: 0 });
    expect(c.answered).toBe(1); // the original answer still goes out
    advance(9_000);
    expect(tracker.check()).toBe(false);
    advance(1_000);
    expect(tracker.check()).toBe(true);
    expect(state.pauses).toHaveLength(1);
  });

  test("a failed call and a client that went away end the activity too (counted once)", () => {
    const { tracker, advance } = rig(10);
    const a = client("fs.read");
    const b = client("sup.shell.read");
    tracker.track(a);
    tracker.track(b);
    a.fail(new Error("x"));
    a.abandon();
    expect(tracker.verdict()).toEqual({ pause: false, why: "1 call(s) in flight" });
    b.abandon();
    advance(10_000);
    expect(tracker.verdict().pause).toBe(true);
  });

  test("calls that only look (status, lists, ping) are not activity", () => {
    const { tracker, advance } = rig(10);
    advance(9_000);
    for (const op of ["sup.status", "sup.shell.list", "ping", "sup.forward.list"]) tracker.track(client(op));
    advance(1_000);
    expect(tracker.verdict().pause).toBe(true);
    // the probe above is meaningful: a real call at the same point would have kept it up
    const r = rig(10);
    r.advance(9_000);
    r.tracker.track(client("fs.list"));
    r.advance(1_000);
    expect(r.tracker.verdict().pause).toBe(false);
  });

  test("a live shell, a running service or detached exec, a create under way: no pause", () => {
    const { tracker, state, advance } = rig(10);
    advance(20_000);
    state.busy = "a service runs";
    expect(tracker.check()).toBe(false);
    expect(tracker.verdict()).toEqual({ pause: false, why: "a service runs" });
    state.busy = null;
    state.inProgress = true;
    expect(tracker.check()).toBe(false);
    state.inProgress = false;
    expect(tracker.check()).toBe(true);
  });

  test("a lifecycle operation holding the lock defers the pause to a later check", () => {
    const { tracker, state, advance } = rig(10);
    advance(10_000);
    state.locked = true;
    expect(tracker.check()).toBe(false);
    expect(state.pauses).toHaveLength(0);
    state.locked = false;
    expect(tracker.check()).toBe(true);
  });

  test("a machine that cannot pause never auto-pauses", () => {
    const t = new IdleTracker("/nonexistent", "ws_x", {
      canPause: false,
      busy: () => null,
      pause: () => {
        throw new Error("must not pause");
      },
      setting: () => ({ seconds: 10, inProgress: false }),
      tryLock: () => true,
      now: () => Date.now() + 3_600_000,
    });
    expect(t.check()).toBe(false);
    expect(t.verdict()).toEqual({ pause: false, why: "this machine cannot be paused" });
  });
});

describe("holdLockUntilExit", () => {
  test("takes a free lock and keeps it; refuses one another holder has", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pyro-idle-lock-"));
    try {
      const busy = join(dir, "busy.lock");
      // another holder (a different open file: flock conflicts even within one process)
      let release!: () => void;
      const held = new Promise<void>((r) => {
        release = r;
      });
      const holder = withLock(busy, () => held);
      await Bun.sleep(20);
      expect(holdLockUntilExit(busy)).toBe(false);
      release();
      await holder;
      const free = join(dir, "free.lock");
      expect(holdLockUntilExit(free)).toBe(true);
      // kept: a waiter now times out
      const err = await withLock(free, () => 1, 50).catch((e) => e);
      expect(err.code).toBe("LOCK_TIMEOUT");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
