/**
 * Runs fuzz cases off the test's thread so a case that never returns can be stopped: before
 * each case it stores the case number in shared memory, which the test watches (fuzz.test.ts).
 * Messages in: { target, seed, from, count, replay?, progress }. Out: one { crash } per
 * crashing case, then { done, cases, ms, maxCaseMs }.
 */
import { b64, crashOf, generateCase, unb64 } from "./harness.ts";
import { patchTarget, tarTarget } from "./targets.ts";

declare const self: Worker;
const TARGETS = { patch: patchTarget, tar: tarTarget };

self.onmessage = async (ev: MessageEvent) => {
  const {
    target: name,
    seed,
    from,
    count,
    replay,
    progress,
  } = ev.data as {
    target: keyof typeof TARGETS;
    seed: number;
    from: number;
    count: number;
    replay?: string[];
    progress: SharedArrayBuffer;
  };
  const target = TARGETS[name];
  const now = new Int32Array(progress);
  const seeds = await target.seeds();
  await target.setup?.();
  const started = performance.now();
  let maxCaseMs = 0;
  const total = replay ? replay.length : count;
  for (let k = 0; k < total; k++) {
    const index = replay ? -1 - k : from + k;
    Atomics.store(now, 0, k);
    const input = replay ? unb64(replay[k] as string) : generateCase(target, seeds, seed, index);
    const t0 = performance.now();
    try {
      await target.run(input, replay ? 0 : index);
    } catch (err) {
      const crash = crashOf(err);
      if (crash) self.postMessage({ crash, index, input: b64(input) });
    }
    maxCaseMs = Math.max(maxCaseMs, performance.now() - t0);
  }
  try {
    await target.teardown?.();
  } catch (err) {
    self.postMessage({ crash: `teardown: ${(err as Error).message}`, index: -1, input: "" });
  }
  self.postMessage({ done: true, cases: total, ms: performance.now() - started, maxCaseMs });
};
