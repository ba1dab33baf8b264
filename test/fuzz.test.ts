/**
 * Seeded fuzzing of the two parsers that read untrusted bytes: the agent's unified-diff patch
 * parser with its check step, and the tar reader (plus sampled full unpacks). Fixed seed,
 * fixed case count, a per-case bound: a case that does not return within CASE_BOUND_MS is a
 * hang. Each target first replays its committed corpus (test/fuzz/corpus/<target>.json:
 * every crash or hang ever found, kept as a regression case); a new one found here is added
 * to that file (commit it) and fails the test. Figures go to stdout (docs/reliability.md).
 * PYRO_FUZZ_SEED / PYRO_FUZZ_CASES override seed and count for a longer local hunt.
 */
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { b64, generateCase } from "./fuzz/harness.ts";
import { patchTarget, tarSandbox, tarTarget, UNPACK_EVERY } from "./fuzz/targets.ts";

const SEED = Number(process.env.PYRO_FUZZ_SEED ?? 15);
const CASES = Number(process.env.PYRO_FUZZ_CASES ?? 100_000);
const CASE_BOUND_MS = 2_000;

interface Finding {
  input: string;
  found: string;
  error: string;
}
interface Outcome {
  findings: Finding[];
  cases: number;
  ms: number;
  maxCaseMs: number;
}

const corpusFile = (name: string) => join(import.meta.dir, "fuzz", "corpus", `${name}.json`);
const readCorpus = (name: string): Finding[] => JSON.parse(readFileSync(corpusFile(name), "utf8"));

/** Runs cases in a worker; a case stuck past CASE_BOUND_MS is reported as a hang and the worker killed. */
function runCases(
  name: "patch" | "tar",
  opts: { from: number; count: number; replay?: string[] },
): Promise<Outcome> {
  const progress = new SharedArrayBuffer(4);
  const now = new Int32Array(progress);
  const worker = new Worker(new URL("./fuzz/worker.ts", import.meta.url).href);
  const findings: Finding[] = [];
  return new Promise((resolve, reject) => {
    let last = -1;
    let since = performance.now();
    const watch = setInterval(async () => {
      const k = Atomics.load(now, 0);
      if (k !== last) {
        last = k;
        since = performance.now();
        return;
      }
      if (performance.now() - since < CASE_BOUND_MS) return;
      clearInterval(watch);
      worker.terminate();
      const index = opts.replay ? -1 - k : opts.from + k;
      const target = name === "patch" ? patchTarget : tarTarget;
      const input = opts.replay
        ? (opts.replay[k] as string)
        : b64(generateCase(target, await target.seeds(), SEED, index));
      findings.push({
        input,
        found: `seed ${SEED} case ${index}`,
        error: `hang: no return in ${CASE_BOUND_MS} ms`,
      });
      resolve({ findings, cases: k + 1, ms: 0, maxCaseMs: CASE_BOUND_MS });
    }, 100);
    worker.onmessage = (ev: MessageEvent) => {
      const m = ev.data;
      if (m.crash) {
        findings.push({ input: m.input, found: `seed ${SEED} case ${m.index}`, error: m.crash });
        return;
      }
      clearInterval(watch);
      worker.terminate();
      resolve({ findings, cases: m.cases, ms: m.ms, maxCaseMs: m.maxCaseMs });
    };
    worker.onerror = (e) => {
      clearInterval(watch);
      reject(e);
    };
    worker.postMessage({
      target: name,
      seed: SEED,
      from: opts.from,
      count: opts.count,
      replay: opts.replay,
      progress,
    });
  });
}

function fuzzTest(name: "patch" | "tar", label: string) {
  test(`fuzz ${label}: the corpus replays, then ${CASES} seeded cases; no crash, no hang`, async () => {
    const corpus = readCorpus(name);
    const replay = await runCases(name, { from: 0, count: 0, replay: corpus.map((c) => c.input) });
    const run = await runCases(name, { from: 0, count: CASES });
    console.log(
      `fuzz ${name}: seed ${SEED}, ${corpus.length} corpus cases, ${run.cases} cases in ${Math.round(run.ms)} ms, slowest case ${run.maxCaseMs.toFixed(1)} ms${name === "tar" ? `, ${Math.ceil(run.cases / UNPACK_EVERY)} full unpacks` : ""}`,
    );
    const fresh = run.findings.filter((f) => f.input && !corpus.some((c) => c.input === f.input));
    if (fresh.length > 0)
      writeFileSync(corpusFile(name), `${JSON.stringify([...corpus, ...fresh.slice(0, 20)], null, 2)}\n`);
    expect(replay.findings.map((f) => `${f.found}: ${f.error}`)).toEqual([]);
    expect(run.findings.map((f) => `${f.found}: ${f.error}`)).toEqual([]);
    expect(run.cases).toBe(CASES);
  }, 600_000);
}

fuzzTest("patch", "patch parser + check");
fuzzTest("tar", "tar reader + sampled unpack");

test("the tar escape check fires when something outside the root changes (its probe works)", async () => {
  await tarTarget.setup?.();
  try {
    const [valid] = await tarTarget.seeds();
    await tarTarget.run(valid as Uint8Array, 0); // a clean unpack passes
    writeFileSync(join(tarSandbox(), "outside", "planted"), "x");
    await expect(tarTarget.run(valid as Uint8Array, 0)).rejects.toThrow(/unpack wrote outside its root/);
  } finally {
    await tarTarget.teardown?.();
  }
});
