/**
 * §1 CLI start: `dist/pyro --version`, spawn → exit, against a hello-world Bun executable
 * compiled the same way (the floor any compiled Bun CLI pays).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type BenchCtx, cell, ms, PYRO, type Section, sh, stats, table } from "./lib.ts";

async function compileHello(ctx: BenchCtx): Promise<string> {
  const dir = join(ctx.home, "bench-hello");
  const src = join(ctx.home, "bench-hello.ts");
  writeFileSync(src, 'console.log("0.0.0");\n');
  const out = join(dir, "hello");
  const r = await Bun.build({
    entrypoints: [src],
    compile: { outfile: out, autoloadBunfig: false, autoloadDotenv: false },
    minify: { syntax: true, whitespace: true },
    sourcemap: "none",
  } as Parameters<typeof Bun.build>[0]);
  if (!r.success) throw new Error(`compiling the hello-world reference failed: ${r.logs.join("\n")}`);
  return out;
}

async function sample(argv: string[], env: Record<string, string | undefined>, n: number): Promise<number[]> {
  for (let i = 0; i < 2; i++) await sh(argv, { env }); // page cache warm
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await sh(argv, { env })).ms);
  return out;
}

export const cliStart: Section = {
  id: "cli",
  title: "1. CLI start",
  async run(ctx) {
    const n = ctx.n(20, 10);
    const hello = await compileHello(ctx);
    // Interleave so background load hits both alike.
    const pyro: number[] = [];
    const ref: number[] = [];
    await sample([PYRO, "--version"], ctx.env, 0);
    await sample([hello], ctx.env, 0);
    for (let i = 0; i < n; i++) {
      pyro.push((await sh([PYRO, "--version"], { env: ctx.env })).ms);
      ref.push((await sh([hello], { env: ctx.env })).ms);
    }
    const list = await sample([PYRO, "workspace", "list", "--json"], ctx.env, Math.min(n, 10));
    const sp = stats(pyro);
    const sr = stats(ref);
    const sl = stats(list);
    const body = [
      table(
        ["Measurement", "N", "median (p90, min–max)", "Target", "Met"],
        [
          [
            "`dist/pyro --version` (spawn → exit)",
            sp.n,
            cell(sp),
            `none set; floor = hello-world ${ms(sr.median)}`,
            "—",
          ],
          ["hello-world Bun executable, compiled like pyro (reference floor)", sr.n, cell(sr), "—", "—"],
          [
            "`dist/pyro workspace list --json` (empty home; loads the operations table)",
            sl.n,
            cell(sl),
            "—",
            "—",
          ],
        ],
      ),
      "",
      `pyro's start costs ${ms(sp.median - sr.median)} over the floor (median), i.e. ${(sp.median / sr.median).toFixed(2)}× the hello-world executable: module evaluation of the CLI tree (citty, valibot schemas, the operations table) before \`--version\` is answered.`,
    ].join("\n");
    return {
      body,
      summary: [
        `CLI start: \`pyro --version\` ${ms(sp.median)} median vs a hello-world Bun executable ${ms(sr.median)} (${(sp.median / sr.median).toFixed(1)}×; no target set)`,
      ],
    };
  },
};
