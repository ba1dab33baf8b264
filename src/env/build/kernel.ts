/**
 * Guest kernel build: Debian's linux-source-6.1, `make tinyconfig` + rootfs/kernel/pyro.fragment
 * + `make olddefconfig`, checked symbol by symbol, then an uncompressed ELF `vmlinux`.
 *
 * Cache layout under `<cacheDir>/kernel/`:
 *   <key>/vmlinux, <key>/config   finished kernels, key = kernelCacheKey(...)
 *   .build-* / .tmp-*             scratch of running (or crashed) builds: the source is
 *                                 extracted into the build's own scratch directory (~10 s)
 *                                 and removed with it, so 1.4 GB of source never lingers;
 *                                 a build killed outright leaves it, and the next build
 *                                 removes it (cache.ts sweepBuildCache: builder pid + start
 *                                 time in the name); its make dies with it (run.ts)
 */
import { existsSync } from "node:fs";
import { appendFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import fragment from "../../../rootfs/kernel/pyro.fragment" with { type: "text" };
import { PyroError } from "../../protocol/errors.ts";
import { cacheKey, publishDir, scratchPath, sweepBuildCache } from "./cache.ts";
import { checkKconfig, describeMismatch } from "./kconfig.ts";
import { type Progress, run } from "./run.ts";

/** Bump when the build steps change in a way that changes the output. */
export const KERNEL_RECIPE_VERSION = "1";
export const KERNEL_SOURCE_PACKAGE = "linux-source-6.1";
export const KERNEL_SOURCE_TARBALL = "/usr/src/linux-source-6.1.tar.xz";
export const KERNEL_FRAGMENT: string = fragment;

export function kernelCacheKey(inputs: {
  fragment: string;
  sourceVersion: string;
  recipeVersion: string;
}): string {
  return cacheKey(["pyro-kernel", inputs.fragment, inputs.sourceVersion, inputs.recipeVersion]);
}

export async function kernelSourceVersion(): Promise<string> {
  try {
    // dpkg's own ${Version} field syntax, not a template placeholder.
    const format = "-f=$" + "{Version}";
    const out = await run(["dpkg-query", "-W", format, KERNEL_SOURCE_PACKAGE], { capture: true });
    if (out.trim()) return out.trim();
  } catch {
    // fall through to the hint below
  }
  throw new PyroError("ENVIRONMENT_BUILD_FAILED", `${KERNEL_SOURCE_PACKAGE} is not installed`, {
    hint: `apt-get install ${KERNEL_SOURCE_PACKAGE} build-essential flex bison bc libelf-dev`,
  });
}

/** Path a finished kernel for these inputs has (or will have) in the cache. */
export function kernelPath(cacheDir: string, key: string): string {
  return join(cacheDir, "kernel", key, "vmlinux");
}

export async function buildKernel(opts: {
  cacheDir: string;
  onProgress?: (line: string) => void;
  jobs?: number;
}): Promise<string> {
  const say: Progress = opts.onProgress ?? (() => {});
  // Every environment build starts here: first remove what killed builds left anywhere in
  // the cache (a kernel tree is ~1.5 GB), even when this kernel is already cached.
  for (const p of sweepBuildCache(opts.cacheDir)) say(`build cache: removed ${p} (its builder is gone)`);
  const sourceVersion = await kernelSourceVersion();
  const key = kernelCacheKey({
    fragment: KERNEL_FRAGMENT,
    sourceVersion,
    recipeVersion: KERNEL_RECIPE_VERSION,
  });
  const root = join(opts.cacheDir, "kernel");
  const out = kernelPath(opts.cacheDir, key);
  if (existsSync(out)) {
    say(`kernel ${key.slice(0, 12)}: cached`);
    return out;
  }
  await mkdir(root, { recursive: true });
  const scratch = scratchPath(root, "build", key.slice(0, 16));
  const build = join(scratch, "linux-source-6.1");
  const started = performance.now();
  try {
    const make = (...args: string[]) =>
      run(["make", "-C", build, ...args], { onProgress: say, env: MAKE_ENV });
    await mkdir(scratch, { recursive: true });
    say(`kernel ${key.slice(0, 12)}: extracting ${KERNEL_SOURCE_TARBALL}`);
    if (!existsSync(KERNEL_SOURCE_TARBALL)) {
      throw new PyroError("ENVIRONMENT_BUILD_FAILED", `${KERNEL_SOURCE_TARBALL} is missing`, {
        hint: `apt-get install ${KERNEL_SOURCE_PACKAGE}`,
      });
    }
    await run(["tar", "-xf", KERNEL_SOURCE_TARBALL, "-C", scratch], { onProgress: say });
    say(`kernel ${key.slice(0, 12)}: configuring (tinyconfig + fragment)`);
    await make("tinyconfig");
    // Later assignments in .config override earlier ones; olddefconfig then resolves deps.
    await appendFile(join(build, ".config"), `\n${KERNEL_FRAGMENT}\n`);
    await make("olddefconfig");
    const config = await readFile(join(build, ".config"), "utf8");
    const mismatches = checkKconfig(KERNEL_FRAGMENT, config);
    if (mismatches.length > 0) {
      throw new PyroError(
        "ENVIRONMENT_BUILD_FAILED",
        `kernel config lost ${mismatches.length} fragment symbol(s): ${mismatches.map(describeMismatch).join("; ")}`,
        {
          details: { mismatches },
          hint: "a symbol's dependencies are missing from rootfs/kernel/pyro.fragment",
        },
      );
    }
    const jobs = opts.jobs ?? availableParallelism();
    say(`kernel ${key.slice(0, 12)}: make -j${jobs} vmlinux`);
    await make(`-j${jobs}`, "vmlinux");

    const staged = scratchPath(root, "tmp", key.slice(0, 16));
    await mkdir(staged);
    await rename(join(build, "vmlinux"), join(staged, "vmlinux"));
    await writeFile(join(staged, "config"), config);
    await publishDir(staged, join(root, key));
    say(`kernel ${key.slice(0, 12)}: built in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    return out;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

// Fixed build identity so the same inputs give the same `uname -v` on every machine.
const MAKE_ENV = {
  KBUILD_BUILD_USER: "pyro",
  KBUILD_BUILD_HOST: "pyro",
  KBUILD_BUILD_TIMESTAMP: "1970-01-01",
  LC_ALL: "C",
};
