/**
 * §15 VM templates (src/manager/templates.ts, docs/templates.md): what restoring the
 * environment's saved template saves over a cold boot, interleaved in one run:
 * - `workspace create` from the template vs cold (`PYRO_TEMPLATES=off`), alternating;
 * - `workspace reset` of a workspace seeded with ~50 MB, template vs cold, alternating;
 * - host PSS (/proc/PID/smaps_rollup: shared pages split among their users) of N idle
 *   templated workspaces side by side (QEMU + supervisor each), and of cold ones for comparison.
 * The one-time cost of making the template is reported too.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readRecord } from "../../src/manager/record.ts";
import { WORKSPACE_TB_MIB } from "../../src/vmm/qemu/argv.ts";
import { deleteWorkspaceCli } from "./exec-host.ts";
import {
  type BenchCtx,
  met,
  mib,
  PYRO,
  pss,
  qemuPssBreakdown,
  type Section,
  type SectionResult,
  sh,
  statHeader,
  statRow,
  stats,
  table,
} from "./lib.ts";

const IDLE_SETTLE_MS = 8000;

async function create(
  ctx: BenchCtx,
  extra: string[],
  templates: boolean,
  more: Record<string, string> = {},
): Promise<{ id: string; ms: number; boot: string; note: string | null }> {
  const env = {
    ...ctx.env,
    PYRO_MAX_ACTIVE_VMS: "32",
    ...(templates ? {} : { PYRO_TEMPLATES: "off" }),
    ...more,
  };
  const r = await sh([PYRO, "workspace", "create", "debian:12", "--json", ...extra], { env });
  const j = JSON.parse(r.stdout);
  return { id: j.workspace_id, ms: r.ms, boot: j.boot, note: j.boot_note };
}

async function reset(ctx: BenchCtx, id: string, templates: boolean): Promise<{ ms: number; boot: string }> {
  const env = { ...ctx.env, ...(templates ? {} : { PYRO_TEMPLATES: "off" }) };
  const r = await sh([PYRO, "workspace", "reset", id, "--json"], { env });
  return { ms: r.ms, boot: JSON.parse(r.stdout).boot };
}

function expectBoot(what: string, got: string, want: string, note?: string | null) {
  if (got !== want) throw new Error(`${what} booted ${got}, expected ${want}${note ? ` (${note})` : ""}`);
}

/** ~50 MB of incompressible files in 50 files. */
function seedDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "pyro-bench-seed-"));
  mkdirSync(join(dir, "data"));
  for (let i = 0; i < 50; i++)
    writeFileSync(
      join(dir, "data", `f${i}.bin`),
      crypto.getRandomValues(new Uint8Array(1 << 20)).fill(i, 0, 16),
    );
  return dir;
}

export const templatesSection: Section = {
  id: "templates",
  title: "15. VM templates",
  async run(ctx: BenchCtx): Promise<SectionResult> {
    const n = ctx.n(5, 2);
    // the one-time make (the first create in a home that has none)
    const first = await create(ctx, [], true);
    expectBoot("the first create", first.boot, "template", first.note);
    await deleteWorkspaceCli(ctx, first.id);

    const fromTemplate: number[] = [];
    const cold: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = await create(ctx, [], true);
      expectBoot("create", t.boot, "template", t.note);
      fromTemplate.push(t.ms);
      await deleteWorkspaceCli(ctx, t.id);
      const c = await create(ctx, [], false);
      expectBoot("create with PYRO_TEMPLATES=off", c.boot, "cold");
      cold.push(c.ms);
      await deleteWorkspaceCli(ctx, c.id);
    }

    // reset of a ~50 MB workspace
    const seed = seedDir();
    const resetT: number[] = [];
    const resetC: number[] = [];
    // a failed seeded create must not leave the ~50 MB seed in $TMPDIR
    const ws = await create(ctx, ["--seed-path", seed], true).catch((err) => {
      rmSync(seed, { recursive: true, force: true });
      throw err;
    });
    try {
      for (let i = 0; i < n; i++) {
        const t = await reset(ctx, ws.id, true);
        expectBoot("reset", t.boot, "template");
        resetT.push(t.ms);
        const c = await reset(ctx, ws.id, false);
        expectBoot("reset with PYRO_TEMPLATES=off", c.boot, "cold");
        resetC.push(c.ms);
      }
    } finally {
      await deleteWorkspaceCli(ctx, ws.id);
      rmSync(seed, { recursive: true, force: true });
    }

    // N idle workspaces side by side: templated, then cold
    const idleN = ctx.n(10, 3);
    const idle = async (templates: boolean, more: Record<string, string> = {}) => {
      const ids: string[] = [];
      try {
        for (let i = 0; i < idleN; i++) ids.push((await create(ctx, [], templates, more)).id);
        await Bun.sleep(IDLE_SETTLE_MS);
        const each = ids.map((id) => {
          const r = readRecord(ctx.home, id);
          return { vmm: pss(r?.vmm_pid), sup: pss(r?.supervisor_pid), parts: qemuPssBreakdown(r?.vmm_pid) };
        });
        return each;
      } finally {
        for (const id of ids) await deleteWorkspaceCli(ctx, id);
      }
    };
    const idleTemplate = await idle(true);
    // the same with transparent huge pages left on for QEMU (before: src/vmm/process.ts spawnThp)
    const idleTemplateThp = await idle(true, { PYRO_VMM_THP: "on" });
    const idleCold = await idle(false);
    const sum = (xs: { vmm: number; sup: number }[]) => xs.map((x) => x.vmm + x.sup);
    type Idle = typeof idleTemplate;
    const medianOf = (xs: Idle, f: (x: Idle[number]) => number) => mib(stats(xs.map(f)).median);
    // QEMU's PSS split (qemuPssBreakdown): one row each, medians over the N workspaces
    const parts = (xs: Idle): (string | number)[][] => [
      [
        `    TCG translation buffer (tb-size ${WORKSPACE_TB_MIB} MiB)`,
        medianOf(xs, (x) => x.parts.tb),
        "",
        idleN,
        "",
      ],
      [
        `    guest RAM, private (pages this VM wrote)`,
        medianOf(xs, (x) => x.parts.ramPrivate),
        "",
        idleN,
        "",
      ],
      [
        `    guest RAM, shared (a clone's share of the template's pages)`,
        medianOf(xs, (x) => x.parts.ramShared),
        "",
        idleN,
        "",
      ],
      [
        `    QEMU itself (heap, TCG tables, binary, libraries)`,
        medianOf(xs, (x) => x.parts.rest),
        "",
        idleN,
        "",
      ],
      [
        `      anonymous (heap, malloc arenas, TCG tables, stacks)`,
        medianOf(xs, (x) => x.parts.restAnon),
        "",
        idleN,
        "",
      ],
      [`      binary and libraries`, medianOf(xs, (x) => x.parts.restFiles), "", idleN, ""],
      [
        `    (of QEMU: backed by transparent huge pages)`,
        medianOf(xs, (x) => x.parts.anonHuge),
        "",
        idleN,
        "",
      ],
    ];

    const ct = stats(fromTemplate);
    const cc = stats(cold);
    const rt = stats(resetT);
    const rc = stats(resetC);
    const pt = stats(sum(idleTemplate));
    const pc = stats(sum(idleCold));
    const ph = stats(sum(idleTemplateThp));
    const createRatio = cc.median / ct.median;
    const resetRatio = rc.median / rt.median;
    const body = [
      table(statHeader("Measurement", "Ratio (median)"), [
        statRow("`workspace create` from the template", ct, `${createRatio.toFixed(1)}× faster`),
        statRow("`workspace create`, cold boot (PYRO_TEMPLATES=off)", cc, "1×"),
        statRow(
          "`workspace reset` of a 50 MB workspace, from the template",
          rt,
          `${resetRatio.toFixed(1)}× faster`,
        ),
        statRow("`workspace reset` of a 50 MB workspace, cold boot", rc, "1×"),
        statRow("first create in a home without a template (makes it once)", stats([first.ms]), "—"),
      ]),
      "",
      table(
        ["Host PSS per idle workspace (QEMU + supervisor)", "median", "min–max", "N", "target ≤ 40 MiB"],
        [
          [
            `from the template, ${idleN} side by side`,
            mib(pt.median),
            `${mib(pt.min)}–${mib(pt.max)}`,
            pt.n,
            met(pt.median <= 40 * 1024 * 1024),
          ],
          [`  of which QEMU`, mib(stats(idleTemplate.map((x) => x.vmm)).median), "", idleN, ""],
          ...parts(idleTemplate),
          [`  of which the supervisor`, mib(stats(idleTemplate.map((x) => x.sup)).median), "", idleN, ""],
          [
            `from the template, QEMU with transparent huge pages (PYRO_VMM_THP=on), ${idleN} side by side`,
            mib(ph.median),
            `${mib(ph.min)}–${mib(ph.max)}`,
            ph.n,
            met(ph.median <= 40 * 1024 * 1024),
          ],
          [`  of which QEMU`, mib(stats(idleTemplateThp.map((x) => x.vmm)).median), "", idleN, ""],
          ...parts(idleTemplateThp),
          [`  of which the supervisor`, mib(stats(idleTemplateThp.map((x) => x.sup)).median), "", idleN, ""],
          [`cold boots, ${idleN} side by side`, mib(pc.median), `${mib(pc.min)}–${mib(pc.max)}`, pc.n, ""],
          [`  of which QEMU`, mib(stats(idleCold.map((x) => x.vmm)).median), "", idleN, ""],
          ...parts(idleCold),
          [`  of which the supervisor`, mib(stats(idleCold.map((x) => x.sup)).median), "", idleN, ""],
        ],
      ),
    ].join("\n");
    return {
      body,
      summary: [
        `create from template ${ct.median.toFixed(0)} ms vs cold ${cc.median.toFixed(0)} ms: ${createRatio.toFixed(1)}× (target ≥ 10×: ${createRatio >= 10 ? "met" : "not met"})`,
        `reset 50 MB from template ${rt.median.toFixed(0)} ms vs cold ${rc.median.toFixed(0)} ms: ${resetRatio.toFixed(1)}×`,
        `idle templated workspace PSS ${mib(pt.median)} (with QEMU's THP on ${mib(ph.median)}; cold ${mib(pc.median)}; target ≤ 40 MiB: ${pt.median <= 40 * 1024 * 1024 ? "met" : "not met"})`,
      ],
    };
  },
};
