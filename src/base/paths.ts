/**
 * The host directories every layer above agrees on. Pure functions of the environment so
 * tests point them anywhere. Workspace-level paths are src/manager/paths.ts.
 */
import os from "node:os";
import { join } from "node:path";

/** The process environment (or a test's stand-in). */
export type Env = Record<string, string | undefined>;

/** $PYRO_HOME, default $XDG_DATA_HOME/pyro. */
export function pyroHome(env: Env = process.env): string {
  if (env.PYRO_HOME) return env.PYRO_HOME;
  const data = env.XDG_DATA_HOME || join(env.HOME || os.homedir(), ".local", "share");
  return join(data, "pyro");
}

/**
 * Build cache (kernel, debootstrap trees): large, reusable across PYRO_HOMEs. As root without
 * XDG_CACHE_HOME it is /var/cache/pyro/build, the same default scripts/setup.sh and the test
 * runner use, so a hand-run `pyro env build` reuses the kernel setup built (a 10-minute build).
 */
export function buildCacheDir(env: Env = process.env): string {
  if (env.PYRO_BUILD_CACHE) return env.PYRO_BUILD_CACHE;
  if (!env.XDG_CACHE_HOME && process.getuid?.() === 0) return "/var/cache/pyro/build";
  const cache = env.XDG_CACHE_HOME || join(env.HOME || os.homedir(), ".cache");
  return join(cache, "pyro", "build");
}

export const environmentsDir = (home: string) => join(home, "environments");
