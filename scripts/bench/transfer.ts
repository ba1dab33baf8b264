/**
 * §7 Seed and export throughput: a ~200 MB tree into a workspace (`syncPush`, the seed's
 * importer; plus the baseline a seeded create captures) and back out (`exportWorkspace`),
 * against plain tar over the same ground, in a host-compat workspace and in a guest.
 *
 * Plain-tar baselines:
 * - host compat: `tar -cf - -C SRC . | tar -xf - -C DST` on the host, the same source and
 *   the same kind of destination (a directory on the same filesystem), streamed through a
 *   pipe as pyro streams through its sockets;
 * - guest: the CLI and the SDK have no stdin for exec, so the plain path is the three steps one
 *   would run by hand, each timed: `tar -c` on the host, the tar moved as ONE file through
 *   pyro's own channel (`syncPush` of a directory holding only the tar: the channel's raw
 *   throughput, with no per-file work), `tar -x` by GNU tar in the guest (export: `tar -c` in
 *   the guest, the one-file export, `tar -x` on the host). Run one after another that is the
 *   serial sum; a streaming pipe could overlap them, so the slowest step alone is the bound
 *   for an ideal pipeline. The verdict uses the serial sum (the plain path that exists).
 */

import { mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { callWorkspace } from "../../src/manager/client.ts";
import { hostRootDir } from "../../src/manager/paths.ts";
import { readRecord } from "../../src/manager/record.ts";
import { captureBaselineSnapshot } from "../../src/manager/snapshots.ts";
import { importIntoWorkspace } from "../../src/manager/transfer.ts";
import { Pyro } from "../../src/sdk/index.ts";
import { createWorkspaceCli, deleteWorkspaceCli } from "./exec-host.ts";
import {
  type BenchCtx,
  cell,
  met,
  ms,
  PYRO,
  type Section,
  type SectionResult,
  sh,
  statHeader,
  statRow,
  stats,
  table,
} from "./lib.ts";
import { mb, mbps, TRANSFER_TREE, type TreeInfo, tarOf, treeFor } from "./tree.ts";

/** No target in the brief for throughput: the bench reference mirrors §6's ≤ 1.5×. */
const REF_RATIO = 1.5;

interface Samples {
  push: number[];
  capture: number[];
  /** a seeded create's import now: archive.import with the baseline from the stream, into an empty /workspace */
  seedBaseline: number[];
  baselineTar: number[];
  export: number[];
  /** host: tar -c | tar -x; guest: the serial plain path's steps */
  plainSeed: number[];
  plainExport: number[];
  hostPack: number[];
  rawIn: number[];
  guestUntar: number[];
  guestPack: number[];
  rawOut: number[];
  hostUntar: number[];
  /** host only: CLI create with and without --seed-path */
  createSeeded: number[];
  createEmpty: number[];
}

const empty = (): Samples => ({
  push: [],
  capture: [],
  seedBaseline: [],
  baselineTar: [],
  export: [],
  plainSeed: [],
  plainExport: [],
  hostPack: [],
  rawIn: [],
  guestUntar: [],
  guestPack: [],
  rawOut: [],
  hostUntar: [],
  createSeeded: [],
  createEmpty: [],
});

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const v = await f();
  return [performance.now() - t, v];
}

/** A fresh, empty scratch directory under the bench home. */
function scratch(ctx: BenchCtx, name: string): string {
  const d = join(ctx.home, "scratch", name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(dirname(d), { recursive: true });
  return d;
}

async function hostSide(ctx: BenchCtx, tree: TreeInfo, s: Samples): Promise<void> {
  const n = ctx.n(5, 2);
  const env = { ...ctx.env, PYRO_BACKEND: "host" };
  const pyro = new Pyro({ home: ctx.home, env });
  for (let i = 0; i < n; i++) {
    ctx.log(`transfer: host compat ${i + 1}/${n}`);
    const id = await createWorkspaceCli(ctx, ["--allow-host-compat"], env);
    try {
      const r = readRecord(ctx.home, id)!;
      const plainSeed = async () => {
        const d = scratch(ctx, "plain-seed");
        mkdirSync(d);
        s.plainSeed.push((await sh(["sh", "-c", `tar -cf - -C '${tree.dir}' . | tar -xf - -C '${d}'`])).ms);
        rmSync(d, { recursive: true, force: true });
      };
      if (i % 2) await plainSeed();
      s.push.push((await timed(() => pyro.syncPush(id, tree.dir)))[0]);
      if (i % 2 === 0) await plainSeed();
      s.capture.push((await timed(() => callWorkspace(ctx.home, r, { op: "baseline.capture" })))[0]);
      s.baselineTar.push((await timed(() => captureBaselineSnapshot(ctx.home, r)))[0]);
      const plainExport = async () => {
        const d = scratch(ctx, "plain-export");
        mkdirSync(d);
        const src = hostRootDir(ctx.home, id);
        s.plainExport.push((await sh(["sh", "-c", `tar -cf - -C '${src}' . | tar -xf - -C '${d}'`])).ms);
        rmSync(d, { recursive: true, force: true });
      };
      if (i % 2) await plainExport();
      const out = scratch(ctx, "export");
      s.export.push((await timed(() => pyro.exportWorkspace(id, "/workspace", out)))[0]);
      rmSync(out, { recursive: true, force: true });
      if (i % 2 === 0) await plainExport();
    } finally {
      await deleteWorkspaceCli(ctx, id);
    }
  }
  // What a seeded create runs now: the import with the baseline captured from the stream.
  for (let i = 0; i < n; i++) {
    const id = await createWorkspaceCli(ctx, ["--allow-host-compat"], env);
    try {
      const r = readRecord(ctx.home, id)!;
      s.seedBaseline.push(
        (await timed(() => importIntoWorkspace(ctx.home, r, tree.dir, "/workspace", { baseline: true })))[0],
      );
    } finally {
      await deleteWorkspaceCli(ctx, id);
    }
  }
  // The seeding part as a CLI user sees it: create with the seed minus create without.
  for (let i = 0; i < ctx.n(3, 1); i++) {
    for (const seeded of i % 2 ? [true, false] : [false, true]) {
      const extra = seeded ? ["--seed-path", tree.dir] : [];
      const r = await sh(
        [PYRO, "workspace", "create", "debian:12", "--allow-host-compat", "--id-only", ...extra],
        {
          env,
        },
      );
      (seeded ? s.createSeeded : s.createEmpty).push(r.ms);
      await deleteWorkspaceCli(ctx, r.stdout.trim());
    }
  }
}

async function guestSide(ctx: BenchCtx, tree: TreeInfo, s: Samples): Promise<void> {
  const n = ctx.n(2, 1);
  const pyro = new Pyro({ home: ctx.home, env: ctx.env });
  const tar = await tarOf(ctx, tree);
  const id = await createWorkspaceCli(ctx, []);
  const exec = async (cmd: string) => {
    const [t, r] = await timed(() => pyro.execWorkspace(id, ["sh", "-c", cmd], { timeout_seconds: 900 }));
    if (r.exit_code !== 0) throw new Error(`${cmd}: exit ${r.exit_code}: ${r.stderr}`);
    return t;
  };
  try {
    const r = readRecord(ctx.home, id)!;
    for (let i = 0; i < n; i++) {
      ctx.log(`transfer: guest ${i + 1}/${n} (pyro)`);
      // Each round into its own directory: the same work as into an empty /workspace.
      s.push.push((await timed(() => pyro.syncPush(id, tree.dir, { dest: `/workspace/p${i}` })))[0]);
      if (i === 0) {
        // The rest of what a seeded create does (before the baseline came from the seed stream: baseline.capture).
        s.capture.push((await timed(() => callWorkspace(ctx.home, r, { op: "baseline.capture" })))[0]);
        s.baselineTar.push((await timed(() => captureBaselineSnapshot(ctx.home, r)))[0]);
      }
      const out = scratch(ctx, "export");
      s.export.push((await timed(() => pyro.exportWorkspace(id, `/workspace/p${i}`, out)))[0]);
      rmSync(out, { recursive: true, force: true });

      ctx.log(`transfer: guest ${i + 1}/${n} (plain tar)`);
      s.hostPack.push((await sh(["sh", "-c", `tar -cf - -C '${tree.dir}' . | wc -c`])).ms);
      s.rawIn.push((await timed(() => pyro.syncPush(id, dirname(tar), { dest: `/workspace/raw${i}` })))[0]);
      s.guestUntar.push(
        await exec(
          `mkdir -p /workspace/plain${i} && tar -xf /workspace/raw${i}/tree.tar -C /workspace/plain${i}`,
        ),
      );
      s.guestPack.push(await exec(`tar -cf - -C /workspace/plain${i} . | wc -c`));
      const outFile = join(scratch(ctx, "raw-out"), "tree.tar");
      mkdirSync(dirname(outFile), { recursive: true });
      s.rawOut.push((await timed(() => pyro.exportWorkspace(id, `/workspace/raw${i}/tree.tar`, outFile)))[0]);
      rmSync(dirname(outFile), { recursive: true, force: true });
      const d = scratch(ctx, "host-untar");
      mkdirSync(d);
      s.hostUntar.push((await sh(["tar", "-xf", tar, "-C", d])).ms);
      rmSync(d, { recursive: true, force: true });
      s.plainSeed.push(s.hostPack.at(-1)! + s.rawIn.at(-1)! + s.guestUntar.at(-1)!);
      s.plainExport.push(s.guestPack.at(-1)! + s.rawOut.at(-1)! + s.hostUntar.at(-1)!);
      // Free the guest disk for the next round (not timed).
      await exec(`rm -rf /workspace/raw${i} /workspace/plain${i}`);
    }
  } finally {
    await deleteWorkspaceCli(ctx, id);
  }
  // What a seeded create runs now, in a fresh workspace (an empty /workspace, as at create).
  ctx.log("transfer: guest seed import with the baseline from the stream");
  const [bootMs, fresh] = await timed(() => createWorkspaceCli(ctx, []));
  s.createEmpty.push(bootMs);
  try {
    const r = readRecord(ctx.home, fresh)!;
    s.seedBaseline.push(
      (await timed(() => importIntoWorkspace(ctx.home, r, tree.dir, "/workspace", { baseline: true })))[0],
    );
  } finally {
    await deleteWorkspaceCli(ctx, fresh);
  }
}

const med = (xs: number[]) => stats(xs).median;

function rateCell(bytes: number, xs: number[]): string {
  const st = stats(xs);
  if (st.n === 0) return "—";
  // fastest run ↔ highest rate
  return `${mbps(bytes, st.median)} (${mbps(bytes, st.max)}–${mbps(bytes, st.min)})`;
}

function sideBody(
  tree: TreeInfo,
  tarBytes: number,
  s: Samples,
  guest: boolean,
): { body: string; seedRatio: number; exportRatio: number; seededVsPlain: number } {
  const B = tree.bytes;
  const row = (label: string, xs: number[], bytes = B, target = "—", ok = "—"): (string | number)[] => [
    label,
    xs.length,
    xs.length ? cell(stats(xs)) : "—",
    xs.length ? rateCell(bytes, xs) : "—",
    target,
    ok,
  ];
  const seedRatio = med(s.push) / med(s.plainSeed);
  const exportRatio = med(s.export) / med(s.plainExport);
  const seededExtra = med(s.push) + med(s.capture) + med(s.baselineTar);
  const seededNow = med(s.seedBaseline) + med(s.baselineTar);
  const boot = med(s.createEmpty);
  const seededVsPlain = (boot + seededNow) / (boot + med(s.plainSeed));
  const rows: (string | number)[][] = [
    row("(1) seed import: `pyro.syncPush(id, TREE)` into an empty directory", s.push),
    row(
      guest
        ? "(2) plain tar in, serial: (h) + (i) + (g) below"
        : "(2) plain tar in: `tar -cf - -C TREE . | tar -xf - -C DIR` on the host",
      s.plainSeed,
    ),
    [
      "**(1) vs (2)**",
      s.push.length,
      `${(seedRatio).toFixed(2)}×`,
      "—",
      `≤ ${REF_RATIO}× (bench reference; no target set)`,
      met(seedRatio <= REF_RATIO),
    ],
    row("(3) export: `pyro.exportWorkspace(id, DIR, OUT)` (safe extractor on the host)", s.export),
    row(
      guest
        ? "(4) plain tar out, serial: (G) + (o) + (H) below"
        : "(4) plain tar out: `tar -cf - -C ROOT . | tar -xf - -C DIR` on the host",
      s.plainExport,
    ),
    [
      "**(3) vs (4)**",
      s.export.length,
      `${exportRatio.toFixed(2)}×`,
      "—",
      `≤ ${REF_RATIO}× (bench reference; no target set)`,
      met(exportRatio <= REF_RATIO),
    ],
    row("(5) the rest of a seeded create: agent `baseline.capture` of the seeded tree", s.capture),
    row(
      "(6) … and the baseline snapshot on the host (guest: a frozen copy of the data disk image; host compat: `/workspace` as one tar)",
      s.baselineTar,
    ),
    [
      "seeded create's extra work before, (1) + (5) + (6)",
      s.capture.length,
      ms(seededExtra),
      mbps(B, seededExtra),
      "—",
      "—",
    ],
    row(
      "(7) a seeded create's import now: `archive.import` with `baseline: true` into an empty /workspace (each file hashed as it streams past, its bytes kept raw in one seed pack; nothing read back, nothing deflated)",
      s.seedBaseline,
    ),
    [
      "seeded create's extra work now, (7) + (6); vs before",
      s.seedBaseline.length,
      `${ms(seededNow)} (${(seededNow / seededExtra).toFixed(2)}× of before)`,
      mbps(B, seededNow),
      "—",
      "—",
    ],
    [
      "**seeded create's seeding vs boot + plain tar (target ≤ 2×)**: (boot + (7) + (6)) / (boot + (2)), boot = a `workspace create` without seed" +
        (guest ? " (in the guest: the fresh workspace (7) ran in)" : ""),
      s.seedBaseline.length,
      `${seededVsPlain.toFixed(2)}× (${ms(boot + seededNow)} vs ${ms(boot + med(s.plainSeed))}; seeding alone ((7) + (6)) / (2): ${(seededNow / med(s.plainSeed)).toFixed(2)}×)`,
      "—",
      "≤ 2× (issue 14)",
      met(seededVsPlain <= 2),
    ],
  ];
  if (!guest) {
    const cs = stats(s.createSeeded);
    const ce = stats(s.createEmpty);
    rows.push(
      row(
        "`dist/pyro workspace create --allow-host-compat --seed-path TREE` (spawn → exit)",
        s.createSeeded,
        B,
      ),
      statRow("`dist/pyro workspace create --allow-host-compat` (no seed)", ce, "—", "—", "—"),
      [
        "  seeding part as the CLI user sees it (difference of medians; cross-check of (1)+(5)+(6))",
        cs.n,
        ms(cs.median - ce.median),
        mbps(B, cs.median - ce.median),
        "—",
        "—",
      ],
    );
  } else {
    const pipeIn = Math.max(med(s.hostPack), med(s.rawIn), med(s.guestUntar));
    const pipeOut = Math.max(med(s.guestPack), med(s.rawOut), med(s.hostUntar));
    rows.push(
      row("(h) `tar -cf - -C TREE . | wc -c` on the host", s.hostPack),
      row(
        `(i) the tar (${mb(tarBytes)}) as one file: \`syncPush\` of its directory — the channel in`,
        s.rawIn,
        tarBytes,
      ),
      row("(g) GNU `tar -xf` of it in the guest (`execWorkspace` round trip)", s.guestUntar),
      row("(G) GNU `tar -cf - DIR | wc -c` in the guest", s.guestPack),
      row("(o) the tar as one file: `exportWorkspace` of it — the channel out", s.rawOut, tarBytes),
      row("(H) `tar -xf` of the same tar on the host", s.hostUntar),
      [
        "ideal streamed pipeline bound: slowest step in / out",
        s.rawIn.length,
        `${ms(pipeIn)} / ${ms(pipeOut)}`,
        `${mbps(B, pipeIn)} / ${mbps(B, pipeOut)}`,
        "—",
        "—",
      ],
      [
        "  (1) / bound in, (3) / bound out",
        s.rawIn.length,
        `${(med(s.push) / pipeIn).toFixed(2)}× / ${(med(s.export) / pipeOut).toFixed(2)}×`,
        "—",
        "—",
        "—",
      ],
    );
  }
  return {
    body: table(statHeader("Measurement", "MB/s (median; range)", "Target", "Met"), rows),
    seedRatio,
    exportRatio,
    seededVsPlain,
  };
}

export const transfer: Section = {
  id: "transfer",
  title: "7. Seed and export throughput",
  async run(ctx: BenchCtx): Promise<SectionResult> {
    const tree = treeFor(ctx, TRANSFER_TREE);
    const tar = await tarOf(ctx, tree);
    const tarBytes = Bun.file(tar).size;
    const host = empty();
    const guest = empty();
    await hostSide(ctx, tree, host);
    await guestSide(ctx, tree, guest);
    const h = sideBody(tree, tarBytes, host, false);
    const g = sideBody(tree, tarBytes, guest, true);
    const body = [
      `Tree: ${tree.files.toLocaleString("en")} files, ${mb(tree.bytes)} of content (MB = 10⁶ bytes; MB/s counts file content), ${tree.dirs} directories: 3,000 text files of 1–32 KiB, 300 of 64–512 KiB, 26 random binaries of 2–8 MiB. Its tar is ${mb(tarBytes)}. Host-side sources and outputs are in the page cache; nothing is fsynced on either side.`,
      "",
      "Plain-tar baselines: on the host, `tar -c | tar -x` streamed through a pipe, the same source to the same kind of destination. In the guest there is no stdin for exec (CLI or SDK), so the plain path is the one you would run by hand, each step timed: `tar -c` on the host, the tar moved as **one file** through pyro's own channel (so the channel's raw throughput, without per-file work), GNU tar in the guest; export the same in reverse. The verdict uses their serial sum (what that path costs); an ideal streaming pipe would be bounded by the slowest step, shown as well. No target was set for throughput: the Met column checks a bench reference of ≤ 1.5× plain tar, mirroring §6.",
      "",
      "### Host compat",
      "",
      `N = ${host.push.length} rounds, each in a fresh \`workspace create --allow-host-compat\` (the CLI, so supervisor and agent are the shipped executables); pyro and plain tar alternate which goes first.`,
      "",
      h.body,
      "",
      "### Guest",
      "",
      `N = ${guest.push.length} round(s) in one guest workspace (each round into its own directory; fewer rounds: a round takes about two minutes under TCG), baseline capture once, and (7) once in a fresh workspace. A seeded create in the guest was not timed whole (it would add ~1.5 min); its parts are the boot (the create of the fresh workspace (7) ran in) + (7) + (6) (before: (1) + (5) + (6)), replayed with the functions \`createWorkspace\` calls, which the host-compat rows cross-check against a real seeded create.`,
      "",
      g.body,
    ].join("\n");
    const fmt = (label: string, s: Samples, r: { seedRatio: number; exportRatio: number }) =>
      `${label} seed ${mbps(tree.bytes, med(s.push))} (${r.seedRatio.toFixed(2)}× plain tar), export ${mbps(tree.bytes, med(s.export))} (${r.exportRatio.toFixed(2)}×)`;
    return {
      body,
      summary: [
        `Seed/export ${mb(tree.bytes)} (${tree.files} files): ${fmt("host compat", host, h)}; ${fmt("guest", guest, g)}; reference ≤ ${REF_RATIO}×: ${h.seedRatio <= REF_RATIO && h.exportRatio <= REF_RATIO && g.seedRatio <= REF_RATIO && g.exportRatio <= REF_RATIO ? "met" : "NOT met"}; seeded create's seeding: guest ${ms(med(guest.seedBaseline) + med(guest.baselineTar))} with the baseline from the stream (before: import + baseline capture ${ms(med(guest.push) + med(guest.capture) + med(guest.baselineTar))}); seeded create vs boot + plain tar: guest ${g.seededVsPlain.toFixed(2)}×, host compat ${h.seededVsPlain.toFixed(2)}× (target ≤ 2×: ${g.seededVsPlain <= 2 ? "met" : "NOT met"})`,
      ],
    };
  },
};
