/**
 * §6 Diff: `pyro.diffWorkspace` (warm SDK) against `git status --porcelain && git diff` on
 * the same 10,000-file tree with the same 10 changes (6 modified, 2 added, 2 deleted), in a
 * host-compat workspace (git on the host, over the workspace's host directory) and in a
 * guest workspace (git inside the guest, through `execWorkspace`).
 *
 * Fairness: both sides read the same files in the same state. Every round rewrites the 10
 * changes with new content, so both must read and hash them again (git re-reads modified
 * files on every status; pyro's stat cache would otherwise skip them). The two are timed
 * alternately, first one then the other. The verdict compares each side's own work: pyro's
 * round trip minus a `ping` round trip over the same warm connection (the crossing without
 * work), against git's time minus, in the guest, the round trip of `execWorkspace(["true"])`
 * (the crossing plus one process spawn; the most favourable to git). On the host git runs
 * in-process-spawned with no crossing at all. The raw round trips are shown next to it.
 */
import { join } from "node:path";
import { callWorkspace } from "../../src/manager/client.ts";
import { hostRootDir } from "../../src/manager/paths.ts";
import { readRecord } from "../../src/manager/record.ts";
import { Pyro } from "../../src/sdk/index.ts";
import { createWorkspaceCli, deleteWorkspaceCli, QUIESCE_MS } from "./exec-host.ts";
import {
  type BenchCtx,
  met,
  ms,
  type Section,
  type SectionResult,
  type Stats,
  sh,
  statHeader,
  statRow,
  stats,
  table,
} from "./lib.ts";
import { DIFF_TREE, mb, type TreeInfo, tarOf, treeFor } from "./tree.ts";

const TARGET_RATIO = 1.5;
const GIT = "git status --porcelain && git diff";
const GIT_IDENT = "-c user.name=bench -c user.email=bench@localhost";

/** The 10 changes: paths chosen from the tree, spread over its directories. */
interface ChangeSet {
  modify: string[];
  remove: string[];
  add: string[];
}

function changeSet(tree: TreeInfo): ChangeSet {
  const p = tree.textPaths;
  // group 2 of DIFF_TREE (2–12 KiB text) starts at 7000: mid-sized source files
  const modify = [0, 1, 2, 3, 4, 5].map((j) => p[7000 + j * 401]!);
  const remove = [p[123]!, p[5555]!];
  const add = ["src/a0/b1/added_0.ts", "src/a3/b7/c2/added_1.ts"];
  return { modify, remove, add };
}

/** One shell script for both sides: round i's content differs from round i−1's. */
function editScript(c: ChangeSet, round: number): string {
  const lines = [
    ...c.modify.map((f) => `printf '// bench edit %s\\n' ${round} >> '${f}'`),
    ...c.remove.map((f) => `rm -f '${f}'`),
    ...c.add.map((f) => `seq 1 120 | sed 's/^/  const line_${round} = /' > '${f}'`),
  ];
  return lines.join("\n");
}

interface SideSamples {
  pyro: number[];
  pyroHashed: number[];
  pyroRepeat: number[];
  pyroRepeatHashed: number[];
  git: number[];
  /** guest only: agent-reported duration_ms of the git exec */
  gitAgent: number[];
  /** guest only: execWorkspace(["true"]) round trip */
  execTrue: number[];
  ping: number[];
  clean: number[];
  cleanHashed: number[];
  cleanGit: number[];
  firstDiff: number;
  firstHashed: number;
  setup: string;
  /** guest only: the agent's baseline.capture of the tree (setup) */
  captureMs: number;
  /** git init + add -A + commit of the tree (setup) */
  gitInitMs: number;
}

async function pingSamples(ctx: BenchCtx, id: string, n: number): Promise<number[]> {
  const r = readRecord(ctx.home, id)!;
  const out: number[] = [];
  await callWorkspace(ctx.home, r, { op: "ping" });
  for (let i = 0; i < n; i++) {
    await Bun.sleep(QUIESCE_MS);
    const t = performance.now();
    await callWorkspace(ctx.home, r, { op: "ping" });
    out.push(performance.now() - t);
  }
  return out;
}

const hashedOf = (d: unknown) => Number((d as { files_hashed?: number }).files_hashed ?? Number.NaN);

async function measureSide(ctx: BenchCtx, guest: boolean, tree: TreeInfo): Promise<SideSamples> {
  const n = guest ? ctx.n(10, 3) : ctx.n(15, 5);
  const pyro = new Pyro({ home: ctx.home, env: ctx.env });
  const changes = changeSet(tree);
  let id: string;
  let setup: string;
  let captureMs = Number.NaN;
  const tSetup = performance.now();
  // git on the host: no user or system config, identity on the command line.
  const gitEnv = { PATH: process.env.PATH, HOME: ctx.home, GIT_CONFIG_NOSYSTEM: "1", LANG: "C.UTF-8" };
  if (!guest) {
    id = await createWorkspaceCli(ctx, ["--allow-host-compat", "--seed-path", tree.dir], {
      ...ctx.env,
      PYRO_BACKEND: "host",
    });
    setup = `\`pyro workspace create --allow-host-compat --seed-path TREE\`, then \`git init && git add -A && git commit\` on the host in \`$PYRO_HOME/workspaces/ID/root\``;
  } else {
    // A seeded create of 10,000 files takes minutes under TCG (see §7); the diff does not care
    // how the files got there, so: one tar file pushed, unpacked by GNU tar in the guest, then
    // the agent's baseline.capture — the state a seeded create leaves (minus baseline.tar, which
    // only reset uses).
    id = await createWorkspaceCli(ctx, []);
    const tar = await tarOf(ctx, tree);
    await pyro.syncPush(id, join(tar, ".."), { dest: "/workspace/.bench-seed" });
    const x = await pyro.execWorkspace(
      id,
      ["sh", "-c", "tar -xf /workspace/.bench-seed/tree.tar -C /workspace && rm -rf /workspace/.bench-seed"],
      { timeout_seconds: 600 },
    );
    if (x.exit_code !== 0) throw new Error(`guest tar -x failed: ${x.stderr}`);
    const tc = performance.now();
    await callWorkspace(ctx.home, readRecord(ctx.home, id)!, { op: "baseline.capture" });
    captureMs = performance.now() - tc;
    setup =
      "`pyro workspace create` (empty), the tree pushed as one tar file and unpacked with GNU tar in the guest, the agent's `baseline.capture` (what a seeded create runs), then `git init && git add -A && git commit` in the guest";
  }
  const root = hostRootDir(ctx.home, id);
  const gitHost = (cmd: string) => sh(["sh", "-c", cmd], { cwd: root, env: gitEnv });
  const gitGuest = (cmd: string, timeout_seconds = 30) =>
    pyro.execWorkspace(id, ["sh", "-c", `cd /workspace && ${cmd}`], { timeout_seconds });
  try {
    // The first diff after the seed: racy index entries are hashed again, the agent's memo is cold.
    const t0 = performance.now();
    const first = await pyro.diffWorkspace(id);
    const firstDiff = performance.now() - t0;
    const firstHashed = hashedOf(first);
    if (first.summary.files_changed !== 0)
      throw new Error(`fresh workspace diff not empty: ${first.files.length}`);
    // gc.auto 0: the commit of 10,000 loose objects would otherwise start `git gc --auto` in
    // the background, which repacks for minutes under TCG while the rounds below are timed.
    const init = `git init -q . && git config gc.auto 0 && git add -A && git ${GIT_IDENT} commit -qm base`;
    const tInit = performance.now();
    if (guest) {
      const g = await gitGuest(init, 600);
      if (g.exit_code !== 0) throw new Error(`git init in the guest failed: ${g.stderr}`);
    } else await gitHost(init);
    const gitInitMs = performance.now() - tInit;
    ctx.log(`diff ${guest ? "guest" : "host"}: setup ${((performance.now() - tSetup) / 1000).toFixed(0)} s`);

    const runGit = async (): Promise<{ ms: number; agent: number; out: string }> => {
      if (!guest) {
        const r = await gitHost(GIT);
        return { ms: r.ms, agent: Number.NaN, out: r.stdout };
      }
      const t = performance.now();
      const r = await gitGuest(GIT);
      const took = performance.now() - t;
      if (r.exit_code !== 0) throw new Error(`git in the guest failed: ${r.stderr}`);
      return { ms: took, agent: r.duration_ms, out: r.stdout };
    };
    const runPyro = async () => {
      const t = performance.now();
      const d = await pyro.diffWorkspace(id);
      return { ms: performance.now() - t, d };
    };
    // warm both (git refreshes its index on the first status; pyro's index memo)
    for (let i = 0; i < 2; i++) {
      await runPyro();
      await runGit();
    }
    const s: SideSamples = {
      pyro: [],
      pyroHashed: [],
      pyroRepeat: [],
      pyroRepeatHashed: [],
      git: [],
      gitAgent: [],
      execTrue: [],
      ping: [],
      clean: [],
      cleanHashed: [],
      cleanGit: [],
      firstDiff,
      firstHashed,
      setup,
      captureMs,
      gitInitMs,
    };
    // The unchanged tree: the stat cache alone decides (files_hashed should be 0).
    for (let i = 0; i < n; i++) {
      for (const side of i % 2 ? ["git", "pyro"] : ["pyro", "git"]) {
        await Bun.sleep(QUIESCE_MS);
        if (side === "pyro") {
          const r = await runPyro();
          if (r.d.summary.files_changed !== 0) throw new Error("clean tree diff not empty");
          s.clean.push(r.ms);
          s.cleanHashed.push(hashedOf(r.d));
        } else s.cleanGit.push((await runGit()).ms);
      }
    }
    // 10 changes, rewritten every round.
    for (let i = 0; i < n; i++) {
      const script = editScript(changes, i);
      if (guest) {
        const e = await pyro.execWorkspace(id, ["sh", "-c", script]);
        if (e.exit_code !== 0) throw new Error(`edit script failed: ${e.stderr}`);
      } else await sh(["sh", "-c", script], { cwd: root });
      for (const side of i % 2 ? ["git", "pyro"] : ["pyro", "git"]) {
        await Bun.sleep(QUIESCE_MS);
        if (side === "pyro") {
          const r = await runPyro();
          if (r.d.summary.files_changed !== 10)
            throw new Error(`expected 10 changed files, got ${JSON.stringify(r.d.files.map((f) => f.path))}`);
          s.pyro.push(r.ms);
          s.pyroHashed.push(hashedOf(r.d));
        } else {
          const g = await runGit();
          const lines = g.out.split("\n").filter((l) => /^( M|\?\?| D) /.test(l));
          if (lines.length !== 10) throw new Error(`git status shows ${lines.length} changes, not 10`);
          s.git.push(g.ms);
          s.gitAgent.push(g.agent);
        }
      }
      await Bun.sleep(QUIESCE_MS);
      const again = await runPyro();
      s.pyroRepeat.push(again.ms);
      s.pyroRepeatHashed.push(hashedOf(again.d));
      if (guest) {
        await Bun.sleep(QUIESCE_MS);
        const t = performance.now();
        await pyro.execWorkspace(id, ["true"]);
        s.execTrue.push(performance.now() - t);
      }
    }
    s.ping = await pingSamples(ctx, id, Math.max(n, 10));
    return s;
  } finally {
    await deleteWorkspaceCli(ctx, id);
  }
}

const ratioCell = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
const intCell = (s: Stats) =>
  s.n === 0 ? "—" : s.min === s.max ? String(s.median) : `${s.median} (${s.min}–${s.max})`;

function sideTable(s: SideSamples, guest: boolean): { body: string; ratio: number; raw: number } {
  const S = stats;
  const p = S(s.pyro);
  const g = S(s.git);
  const ga = S(s.gitAgent.filter(Number.isFinite));
  const t = S(s.execTrue);
  const ping = S(s.ping);
  const rep = S(s.pyroRepeat);
  const cl = S(s.clean);
  const clg = S(s.cleanGit);
  const pyroNet = p.median - ping.median;
  const gitNet = guest ? g.median - t.median : g.median;
  const ratio = pyroNet / gitNet;
  const raw = p.median / g.median;
  const gitLabel = guest
    ? `(b) \`${GIT}\` via \`execWorkspace\` in the guest, round trip`
    : `(b) \`${GIT}\` on the host (spawn → exit, cwd = the workspace's host directory)`;
  const rows: (string | number)[][] = [
    statRow("(a) `pyro.diffWorkspace(id)` after the round's 10 changes, warm SDK", p, "—", "—"),
    ["  files_hashed in (a)", p.n, intCell(S(s.pyroHashed)), "—", "—"],
    statRow(gitLabel, g, "—", "—"),
  ];
  if (guest) {
    rows.push(
      statRow("  agent-reported `duration_ms` of (b) (sh + git in the guest, integer ms)", ga, "—", "—"),
      statRow('(c) `execWorkspace(["true"])` round trip (the exec crossing + one spawn)', t, "—", "—"),
    );
  }
  rows.push(
    statRow("(p) `ping` round trip on the SDK's warm connection (the crossing, no work)", ping, "—", "—"),
    [
      guest
        ? "**pyro's work vs git's: (a) − (p) vs (b) − (c)**"
        : "**pyro's work vs git's: (a) − (p) vs (b)**",
      p.n,
      `${ms(pyroNet)} vs ${ms(gitNet)} = ${ratioCell(pyroNet, gitNet)}`,
      `≤ ${TARGET_RATIO}×`,
      met(ratio <= TARGET_RATIO),
    ],
    ["  as a caller sees it: (a) vs (b), round trips", p.n, `${ratioCell(p.median, g.median)}`, "—", "—"],
    statRow("(a') `diffWorkspace` again right after (a), nothing changed in between", rep, "—", "—"),
    ["  files_hashed in (a')", rep.n, intCell(S(s.pyroRepeatHashed)), "—", "—"],
    statRow("(u) `diffWorkspace` of the unchanged tree (no changes since the baseline)", cl, "—", "—"),
    [
      "  files_hashed in (u) (the stat cache: 0 expected)",
      cl.n,
      intCell(S(s.cleanHashed)),
      "0",
      met(S(s.cleanHashed).max === 0),
    ],
    statRow("  the same unchanged tree: (b)", clg, "—", "—"),
    [
      "first `diffWorkspace` after the seed (racy index entries re-hashed, agent memo cold)",
      1,
      `${ms(s.firstDiff)}, files_hashed ${s.firstHashed}`,
      "—",
      "—",
    ],
  );
  if (guest)
    rows.push([
      "setup, once: the agent's `baseline.capture` of the tree (hash + store every file) vs `git init && git add -A && git commit` in the same guest",
      1,
      `${ms(s.captureMs)} vs ${ms(s.gitInitMs)}`,
      "—",
      "—",
    ]);
  else
    rows.push([
      "setup, once: `git init && git add -A && git commit` on the host",
      1,
      ms(s.gitInitMs),
      "—",
      "—",
    ]);
  return {
    body: table(statHeader("Measurement", "Target", "Met"), rows),
    ratio,
    raw,
  };
}

export const diffSection: Section = {
  id: "diff",
  title: "6. Diff",
  async run(ctx: BenchCtx): Promise<SectionResult> {
    const tree = treeFor(ctx, DIFF_TREE);
    ctx.log("diff: host compat");
    const host = await measureSide(ctx, false, tree);
    ctx.log("diff: guest");
    const guest = await measureSide(ctx, true, tree);
    const h = sideTable(host, false);
    const g = sideTable(guest, true);
    const c = changeSet(tree);
    const body = [
      `Tree: ${tree.files.toLocaleString("en")} files, ${mb(tree.bytes)} (${tree.dirs} directories, 4 levels: src/aN/bN/cN; 9,970 text files of 200 B–96 KiB, 30 binary files of 96–512 KiB). Each round rewrites the same 10 changes with new content — ${c.modify.length} modified (a line appended to 2–12 KiB files), ${c.add.length} added (~3 KB each), ${c.remove.length} deleted — then times \`diffWorkspace\` and \`${GIT}\` alternately (which goes first alternates too), so both read and hash the changed files every round and see the same page cache. git has no user or system config (identity given with \`-c\`) and \`gc.auto 0\` (the base commit of 10,000 loose objects would otherwise leave a background \`git gc --auto\` repacking through the timed rounds); pyro's baseline leaves \`.git\` out as git does, and \`diffWorkspace\` must report exactly 10 changed files and \`git status\` exactly 10 lines, or the section fails.`,
      "",
      `**Fair comparison.** Both sides pay a crossing in the guest: the diff is one request through SDK → supervisor → agent; git is an exec through the same path plus process spawns. The verdict compares their own work: (a) − (p), pyro's round trip minus a no-op \`ping\` over the same warm connection, against (b) − (c), git's round trip minus an \`execWorkspace(["true"])\` round trip — that subtracts the crossing *and* one process spawn from git, the most favourable reading for git. On the host git runs with no crossing, so (b) counts whole. The raw ratio of round trips (what a caller waits) is shown below it.`,
      "",
      "### Host compat",
      "",
      `Setup: ${host.setup}. N = ${host.pyro.length} rounds.`,
      "",
      h.body,
      "",
      "### Guest",
      "",
      `Setup: ${guest.setup}. N = ${guest.pyro.length} rounds (fewer: every call runs under TCG).`,
      "",
      g.body,
    ].join("\n");
    const verdict = (r: number) => `${r.toFixed(2)}× (${r <= TARGET_RATIO ? "met" : "NOT met"})`;
    return {
      body,
      summary: [
        `Diff (10,000 files, 10 changes) vs \`${GIT}\`, target ≤ ${TARGET_RATIO}× by own work: host compat ${ms(stats(host.pyro).median)} vs ${ms(stats(host.git).median)} → ${verdict(h.ratio)}; guest ${ms(stats(guest.pyro).median)} vs ${ms(stats(guest.git).median)} → ${verdict(g.ratio)}; unchanged tree ${ms(stats(host.clean).median)} / ${ms(stats(guest.clean).median)} with files_hashed ${stats(host.cleanHashed).max}/${stats(guest.cleanHashed).max}`,
      ],
    };
  },
};
