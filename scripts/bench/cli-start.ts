/**
 * §1 CLI start: `dist/pyro --version`, spawn → exit, against a hello-world Bun executable
 * compiled the same way (the floor any compiled Bun CLI pays), and the same hello-world
 * importing node:crypto (which pyro's startup graph imports statically).
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { type BenchCtx, ms, PYRO, ROOT, type Section, sh, statHeader, statRow, stats, table } from "./lib.ts";

/** src files (tests excluded) with a static `import ... from "node:crypto"`. */
function staticCryptoImporters(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith(".ts") && !p.endsWith(".test.ts")) {
        if (/^import [^;]*from "(node:)?crypto";/m.test(readFileSync(p, "utf8"))) out.push(relative(ROOT, p));
      }
    }
  };
  walk(join(ROOT, "src"));
  return out.sort();
}

async function compile(ctx: BenchCtx, name: string, source: string): Promise<string> {
  const src = join(ctx.home, `bench-${name}.ts`);
  writeFileSync(src, source);
  const out = join(ctx.home, "bench-bin", name);
  const r = await Bun.build({
    entrypoints: [src],
    compile: { outfile: out, autoloadBunfig: false, autoloadDotenv: false },
    minify: { syntax: true, whitespace: true },
    sourcemap: "none",
  } as Parameters<typeof Bun.build>[0]);
  if (!r.success) throw new Error(`compiling the ${name} reference failed: ${r.logs.join("\n")}`);
  return out;
}

export const cliStart: Section = {
  id: "cli",
  title: "1. CLI start",
  async run(ctx) {
    const n = ctx.n(20, 10);
    const hello = await compile(ctx, "hello", 'console.log("0.0.0");\n');
    // Used, so the bundler keeps the import (an unused builtin import is dropped).
    const crypto = await compile(
      ctx,
      "hello-crypto",
      'import { createHash } from "node:crypto";\nconsole.log(typeof createHash === "function" ? "0.0.0" : "");\n',
    );
    const variants: [string, string[]][] = [
      ["pyro", [PYRO, "--version"]],
      ["hello", [hello]],
      ["crypto", [crypto]],
      ["list", [PYRO, "workspace", "list", "--json"]],
    ];
    const samples = new Map<string, number[]>(variants.map(([k]) => [k, []]));
    for (let w = 0; w < 2; w++) for (const [, argv] of variants) await sh(argv, { env: ctx.env }); // page cache warm
    // Interleaved, so background load hits all alike.
    for (let i = 0; i < n; i++) {
      for (const [k, argv] of variants) samples.get(k)!.push((await sh(argv, { env: ctx.env })).ms);
    }
    const sp = stats(samples.get("pyro")!);
    const sr = stats(samples.get("hello")!);
    const sc = stats(samples.get("crypto")!);
    const sl = stats(samples.get("list")!);
    const body = [
      table(statHeader("Measurement", "Target", "Met"), [
        statRow(
          "`dist/pyro --version` (spawn → exit)",
          sp,
          `none set; floor = hello-world ${ms(sr.median)}`,
          "—",
        ),
        statRow("hello-world Bun executable, compiled like pyro (floor)", sr, "—", "—"),
        statRow('the same hello-world with `import { createHash } from "node:crypto"`', sc, "—", "—"),
        statRow("`dist/pyro workspace list --json` (empty home)", sl, "—", "—"),
      ]),
      "",
      `pyro's start costs ${ms(sp.median - sr.median)} over the floor (median; ${(sp.median / sr.median).toFixed(1)}× the hello-world executable), module loading and evaluation before \`--version\` is answered: \`src/main.ts\` imports the CLI tree, which statically imports every operation (valibot schemas, citty) and, through them, \`node:crypto\` (static importers in src: ${
        staticCryptoImporters()
          .map((f) => `\`${f}\``)
          .join(", ") || "none left"
      }) — that import alone costs ${ms(sc.median - sr.median)} in a compiled Bun executable (row 3 − row 2), because Bun's node:crypto loads its stream classes.`,
    ].join("\n");
    return {
      body,
      summary: [
        `CLI start: \`pyro --version\` ${ms(sp.median)} median vs a hello-world Bun executable ${ms(sr.median)} (${(sp.median / sr.median).toFixed(1)}×; no target set); a static node:crypto import alone costs ${ms(sc.median - sr.median)}`,
      ],
    };
  },
};
