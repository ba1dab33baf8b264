import { describe, expect, test } from "bun:test";
import {
  judgeSilence,
  overdue,
  PROBE_ANSWER_MS,
  PROBE_CPU_MS,
  PROBE_IDLE_MIN_CPU_MS,
  PROBE_WALL_MAX_MS,
  silenceMessage,
} from "./deadline.ts";

const W = PROBE_ANSWER_MS;
const run = (cpuMs: number, waitMs: number | null = 0, stopped = false) => ({ cpuMs, waitMs, stopped });

describe("judgeSilence: an unanswered probe against the VMM's CPU use", () => {
  test("within the answer window: always wait", () => {
    expect(judgeSilence(W - 1, W, run(PROBE_CPU_MS * 2))).toBe("wait");
    expect(judgeSilence(W - 1, W, null)).toBe("wait");
  });

  test("pid unknown: the window alone decides (the old rule)", () => {
    expect(judgeSilence(W, W, null)).toEqual({ by: "agent", elapsedMs: W, cpuMs: null, idle: false });
  });

  test("a busy VMM that ran PROBE_CPU_MS: the agent's fault", () => {
    // the same VMM one ms of CPU short waits (it asked for the CPU all along: starved)
    expect(judgeSilence(W, W, run(PROBE_CPU_MS - 1, 4 * W))).toBe("wait");
    expect(judgeSilence(W, W, run(PROBE_CPU_MS, 4 * W))).toEqual({
      by: "agent",
      elapsedMs: W,
      cpuMs: PROBE_CPU_MS,
      idle: false,
    });
  });

  test("a starved VMM (runnable, little CPU) waits until the wall cap, then the VMM is named", () => {
    const starved = run(400, 2 * W);
    expect(judgeSilence(W, W, starved)).toBe("wait");
    expect(judgeSilence(PROBE_WALL_MAX_MS - 1, W, run(400, PROBE_WALL_MAX_MS))).toBe("wait");
    expect(judgeSilence(PROBE_WALL_MAX_MS, W, run(400, PROBE_WALL_MAX_MS))).toEqual({
      by: "vmm",
      elapsedMs: PROBE_WALL_MAX_MS,
      cpuMs: 400,
      stopped: false,
    });
  });

  test("an idle VMM (ran, seldom runnable) is not starved: the agent's fault after the window", () => {
    // measured: an idle TCG guest's QEMU runs ~58 ms/s and waits ~284 ms/s at load 4
    expect(judgeSilence(W, W, run(290, 1420))).toEqual({ by: "agent", elapsedMs: W, cpuMs: 290, idle: true });
    // the same demand but below the minimum CPU (a frozen VMM runs none): not idle, waits
    expect(judgeSilence(W, W, run(PROBE_IDLE_MIN_CPU_MS - 1, 0))).toBe("wait");
    // runnable more than PROBE_IDLE_DEMAND of the time: starved, waits
    expect(judgeSilence(W, W, run(290, W))).toBe("wait");
    // the run-queue wait unknown: cannot tell idle from starved, waits
    expect(judgeSilence(W, W, run(290, null))).toBe("wait");
  });

  test("a stopped VMM (SIGSTOP) never counts against the agent; at the cap it is named stopped", () => {
    expect(judgeSilence(W, W, run(PROBE_IDLE_MIN_CPU_MS * 4, 0, true))).toBe("wait");
    const v = judgeSilence(PROBE_WALL_MAX_MS, W, run(0, 0, true));
    expect(v).toEqual({ by: "vmm", elapsedMs: PROBE_WALL_MAX_MS, cpuMs: 0, stopped: true });
    expect(silenceMessage("did not answer a ping", v as never)).toContain("the VMM process is stopped");
  });

  test("a window longer than the cap is still waited out in full", () => {
    expect(judgeSilence(PROBE_WALL_MAX_MS, PROBE_WALL_MAX_MS + 1, run(0, 0, true))).toBe("wait");
  });

  test("messages say whose fault it was", () => {
    expect(
      silenceMessage("did not answer a ping", { by: "agent", elapsedMs: 5000, cpuMs: 10_000, idle: false }),
    ).toBe("the workspace agent did not answer a ping though its VM ran for 10000 ms of CPU in 5 s");
    expect(
      silenceMessage("did not answer a ping", { by: "vmm", elapsedMs: 120_000, cpuMs: 3, stopped: false }),
    ).toBe(
      "the workspace agent did not answer a ping for 120 s, but its VMM made too little progress to tell: 3 ms of CPU in that time (host overloaded or VMM stopped)",
    );
  });
});

describe("overdue with a judged silence", () => {
  test("the verdict carries the judged message; an answered probe keeps the call", async () => {
    const started = Date.now() - 60_000;
    const verdict = await overdue(
      { op: "sync.push", started, lastProgress: started, pid: null },
      async () => ({ silent: { by: "vmm", elapsedMs: 120_000, cpuMs: 3, stopped: true } }),
      new AbortController().signal,
      "hint",
    );
    expect(verdict?.agentDead).toBe(true);
    expect(verdict?.error.code).toBe("AGENT_UNRESPONSIVE");
    expect(verdict?.error.message).toContain("sync.push: nothing moved for");
    expect(verdict?.error.message).toContain("(the VMM process is stopped)");
    // the probe: the same call with an answering agent is not judged (until the abort)
    const ac = new AbortController();
    let probes = 0;
    const alive = overdue(
      { op: "sync.push", started, lastProgress: started, pid: null },
      async () => {
        probes += 1;
        ac.abort();
        return "answered";
      },
      ac.signal,
      "hint",
    );
    expect(await alive).toBeNull();
    expect(probes).toBe(1);
  });
});
