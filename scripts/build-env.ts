/**
 * Build guest artifacts by hand (the lead's scripts and tests call src/env/build directly):
 *   bun scripts/build-env.ts kernel [--out PATH] [--jobs N] [--cache DIR]
 *   bun scripts/build-env.ts rootfs NAME --agent PATH --out PATH [--cache DIR]
 *   bun scripts/build-env.ts datadisk --out PATH [--size MIB]
 * Progress goes to stderr; the built artifact's path to stdout.
 * Cache: --cache, else $PYRO_BUILD_CACHE, else <repo>/.cache/build.
 */
import { copyFile, mkdir, rename } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildKernel, buildRootfs, createDataDisk, DEFAULT_DATA_DISK_MIB } from "../src/env/build/index.ts";
import { CATALOG, findRecipe } from "../src/env/catalog.ts";

const USAGE = `usage:
  bun scripts/build-env.ts kernel [--out PATH] [--jobs N] [--cache DIR]
  bun scripts/build-env.ts rootfs NAME --agent PATH --out PATH [--cache DIR]
  bun scripts/build-env.ts datadisk --out PATH [--size MIB]
environments: ${CATALOG.map((r) => r.name).join(", ")}`;

function fail(message: string): never {
  console.error(`build-env: ${message}\n${USAGE}`);
  process.exit(64);
}

const { values, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  allowPositionals: true,
  options: {
    agent: { type: "string" },
    out: { type: "string" },
    cache: { type: "string" },
    jobs: { type: "string" },
    size: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const cacheDir = resolve(
  values.cache ?? process.env.PYRO_BUILD_CACHE ?? resolve(import.meta.dir, "..", ".cache", "build"),
);
const onProgress = (line: string) => console.error(line);
const [what, name] = positionals;

try {
  if (what === "kernel") {
    const jobs = values.jobs === undefined ? undefined : Number(values.jobs);
    const vmlinux = await buildKernel({ cacheDir, onProgress, jobs });
    if (values.out) {
      const out = resolve(values.out);
      await mkdir(dirname(out), { recursive: true });
      await copyFile(vmlinux, `${out}.tmp`);
      await rename(`${out}.tmp`, out);
      console.log(out);
    } else {
      console.log(vmlinux);
    }
  } else if (what === "rootfs") {
    if (!name) fail("rootfs needs an environment NAME");
    const recipe = findRecipe(name) ?? fail(`unknown environment ${name}`);
    if (!values.agent || !values.out) fail("rootfs needs --agent PATH and --out PATH");
    const outPath = resolve(values.out);
    await buildRootfs({ recipe, agentPath: resolve(values.agent), cacheDir, outPath, onProgress });
    console.log(outPath);
  } else if (what === "datadisk") {
    if (!values.out) fail("datadisk needs --out PATH");
    const outPath = resolve(values.out);
    await createDataDisk(outPath, values.size === undefined ? DEFAULT_DATA_DISK_MIB : Number(values.size));
    console.log(outPath);
  } else {
    fail(what ? `unknown target ${what}` : "missing target");
  }
} catch (err) {
  const e = err as { message?: string; details?: { tail?: string }; hint?: string };
  if (e.details?.tail) console.error(e.details.tail);
  console.error(`build-env: ${e.message ?? String(err)}${e.hint ? `\nhint: ${e.hint}` : ""}`);
  process.exit(70);
}
