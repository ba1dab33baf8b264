/**
 * The cached package tree of a recipe: `debootstrap --variant=minbase --include=...` once per
 * (suite, package set, recipe version), trimmed, then never modified again. Image assembly
 * (rootfs.ts) hard-links it into a staging tree, so the slow step (≈1 min, network) runs
 * only when the package list changes.
 *
 * Layout under `<cacheDir>/debootstrap/`: `<key>/tree/` (the root), `<key>/info.json`,
 * `debs/` (debootstrap's package cache, shared by all recipes), `.tree-*` scratch.
 */
import { existsSync, lstatSync, readdirSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { EnvironmentRecipe } from "../catalog.ts";
import { cacheKey, publishDir, removeStale, scratchPath } from "./cache.ts";
import { type Progress, run } from "./run.ts";

export const DEBIAN_MIRROR = "http://deb.debian.org/debian";
/** Bump when the debootstrap invocation or the trimming changes the tree. */
export const TREE_RECIPE_VERSION = "1";

export function treeCacheKey(recipe: Pick<EnvironmentRecipe, "suite" | "packages" | "version">): string {
  const packages = [...new Set(recipe.packages)].sort();
  return cacheKey([
    "pyro-debootstrap",
    TREE_RECIPE_VERSION,
    recipe.suite,
    recipe.version,
    packages.join(","),
    DEBIAN_MIRROR,
  ]);
}

export interface TreeInfo {
  key: string;
  suite: string;
  packages: string[];
  debootstrapSeconds: number;
  builtAt: string;
}

/** Return the cached tree for the recipe, running debootstrap first if needed. */
export async function ensureTree(
  recipe: EnvironmentRecipe,
  cacheDir: string,
  say: Progress,
): Promise<string> {
  const key = treeCacheKey(recipe);
  const root = join(cacheDir, "debootstrap");
  const final = join(root, key);
  const tree = join(final, "tree");
  if (existsSync(join(final, "info.json"))) {
    say(`rootfs ${recipe.name}: package tree ${key.slice(0, 12)} cached`);
    return tree;
  }
  await mkdir(join(root, "debs"), { recursive: true });
  removeStale(root);
  const scratch = scratchPath(root, "tree", key.slice(0, 16));
  const packages = [...new Set(recipe.packages)].sort();
  try {
    await mkdir(scratch);
    say(`rootfs ${recipe.name}: debootstrap ${recipe.suite} (+${packages.join(",")})`);
    const started = performance.now();
    await run(
      [
        "debootstrap",
        "--variant=minbase",
        `--include=${packages.join(",")}`,
        `--cache-dir=${join(root, "debs")}`,
        recipe.suite,
        join(scratch, "tree"),
        DEBIAN_MIRROR,
      ],
      { onProgress: say, env: { DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" } },
    );
    const debootstrapSeconds = Math.round((performance.now() - started) / 100) / 10;
    await trimTree(join(scratch, "tree"));
    const info: TreeInfo = {
      key,
      suite: recipe.suite,
      packages,
      debootstrapSeconds,
      builtAt: new Date().toISOString(),
    };
    await writeFile(join(scratch, "info.json"), `${JSON.stringify(info, null, 2)}\n`);
    await publishDir(scratch, final);
    say(`rootfs ${recipe.name}: debootstrap took ${debootstrapSeconds} s`);
    return tree;
  } catch (err) {
    await rm(scratch, { recursive: true, force: true });
    throw err;
  }
}

// Keeps images small; the same rules apply to packages a user installs later in the guest.
const DPKG_NODOC = `# pyro: no docs, man pages or translations (copyright files stay)
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
`;

/** Drop what a guest never needs: apt caches and lists, docs (not copyrights), man, locales. */
export async function trimTree(tree: string): Promise<void> {
  const empty = (dir: string, keep: readonly string[] = []) => {
    const path = join(tree, dir);
    if (!existsSync(path)) return [];
    return readdirSync(path)
      .filter((e) => !keep.includes(e))
      .map((e) => rm(join(path, e), { recursive: true, force: true }));
  };
  await Promise.all([
    ...empty("var/cache/apt", ["archives"]),
    ...empty("var/cache/apt/archives", ["partial", "lock"]),
    ...empty("var/lib/apt/lists", ["partial", "lock"]),
    ...empty("usr/share/man"),
    ...empty("usr/share/info"),
    ...empty("usr/share/locale"),
    ...empty("usr/share/lintian"),
    ...empty("var/log", ["apt"]),
    ...empty("var/log/apt"),
    // debootstrap copies the build host's files; the image gets its own at assembly.
    rm(join(tree, "etc/hostname"), { force: true }),
    rm(join(tree, "etc/resolv.conf"), { force: true }),
  ]);
  const doc = join(tree, "usr/share/doc");
  if (existsSync(doc)) {
    for (const pkg of readdirSync(doc)) {
      const dir = join(doc, pkg);
      if (!lstatSync(dir).isDirectory()) continue;
      await Promise.all(empty(join("usr/share/doc", pkg), ["copyright"]));
    }
  }
  await mkdir(join(tree, "etc/dpkg/dpkg.cfg.d"), { recursive: true });
  await writeFile(join(tree, "etc/dpkg/dpkg.cfg.d/pyro-nodoc"), DPKG_NODOC);
}
