import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { processStart } from "../../base/proc.ts";
import { cacheKey, removeStale, scratchIsStale, scratchPath, sweepBuildCache } from "./cache.ts";
import { treeCacheKey } from "./debootstrap.ts";
import {
  buildKernel,
  KERNEL_FRAGMENT,
  KERNEL_RECIPE_VERSION,
  kernelCacheKey,
  kernelSourceVersion,
} from "./kernel.ts";

describe("cacheKey", () => {
  test("is a stable sha256 hex string", () => {
    expect(cacheKey(["a", "b"])).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey(["a", "b"])).toBe(cacheKey(["a", "b"]));
  });
  test("keeps part boundaries", () => {
    expect(cacheKey(["ab", "c"])).not.toBe(cacheKey(["a", "bc"]));
  });
});

describe("kernelCacheKey", () => {
  const base = {
    fragment: "CONFIG_PVH=y\n",
    sourceVersion: "6.1.192-2",
    recipeVersion: KERNEL_RECIPE_VERSION,
  };
  test("changes when any input changes", () => {
    const k = kernelCacheKey(base);
    expect(kernelCacheKey({ ...base })).toBe(k);
    expect(kernelCacheKey({ ...base, fragment: "CONFIG_PVH=y\nCONFIG_ACPI=y\n" })).not.toBe(k);
    expect(kernelCacheKey({ ...base, sourceVersion: "6.1.193-1" })).not.toBe(k);
    expect(kernelCacheKey({ ...base, recipeVersion: "999" })).not.toBe(k);
  });
});

describe("treeCacheKey", () => {
  const recipe = { suite: "bookworm", version: "1", packages: ["git", "tini"] };
  test("changes with packages, suite and recipe version", () => {
    const k = treeCacheKey(recipe);
    expect(treeCacheKey({ ...recipe, packages: ["git", "tini", "curl"] })).not.toBe(k);
    expect(treeCacheKey({ ...recipe, suite: "trixie" })).not.toBe(k);
    expect(treeCacheKey({ ...recipe, version: "2" })).not.toBe(k);
  });
  test("ignores package order and duplicates", () => {
    expect(treeCacheKey({ ...recipe, packages: ["tini", "git", "git"] })).toBe(treeCacheKey(recipe));
  });
});

describe("scratch trees of killed builds (issue 15: an interrupted build left ~1.5 GB)", () => {
  /** A pid that has exited (and so names no process), with the start time it had. */
  function deadPid(): number {
    const p = Bun.spawnSync(["true"]);
    return p.pid;
  }
  /** A fake build tree named like scratchPath's, with a file inside. */
  function tree(dir: string, name: string): string {
    const t = join(dir, name);
    mkdirSync(join(t, "linux-source-6.1"), { recursive: true });
    writeFileSync(join(t, "linux-source-6.1", "Makefile"), "all:\n");
    return t;
  }
  const cacheDir = () => mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "buildcache-"));

  test("a dead builder's tree goes; a live builder's stays; a reused pid does not keep one", () => {
    const dir = cacheDir();
    const me = processStart(process.pid);
    const dead = tree(dir, `.build-abc-${deadPid()}-p12345-m0`);
    const live = scratchPath(dir, "build", "abc");
    tree(dir, live.slice(dir.length + 1));
    // this process's pid with another start time: the pid was reused, the builder is gone
    const reused = tree(dir, `.build-abc-${process.pid}-p${Number(me) + 1}-m0`);
    const unrelated = tree(dir, "abc"); // a finished entry, not scratch
    // the probe: the live name parses and is judged live
    expect(scratchIsStale(dir, live.slice(dir.length + 1))).toBe(false);
    expect(live).toContain(`-${process.pid}-p${me}-`);
    expect(removeStale(dir).sort()).toEqual([dead, reused].sort());
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(reused)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(unrelated)).toBe(true);
  });

  test("older names (pid and time only): dead pid removed, live pid kept", () => {
    const dir = cacheDir();
    const dead = tree(dir, `.tree-abc-${deadPid()}-m0`);
    const live = tree(dir, `.tree-abc-${process.pid}-m0`);
    removeStale(dir);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
  });

  test("the sweep covers the whole cache (kernel, debootstrap, staging, top level)", () => {
    const dir = cacheDir();
    const stale = ["kernel", "debootstrap", "staging", "."].map((sub) => {
      mkdirSync(join(dir, sub), { recursive: true });
      return tree(join(dir, sub), `.stage-x-${deadPid()}-p1-m0`);
    });
    const kept = tree(
      join(dir, "kernel"),
      scratchPath(join(dir, "kernel"), "build", "k").split("/").at(-1) as string,
    );
    expect(sweepBuildCache(dir).length).toBe(4);
    for (const s of stale) expect(existsSync(s)).toBe(false);
    expect(existsSync(kept)).toBe(true);
  });

  test("the next environment build removes a killed build's kernel tree, even when the kernel is cached", async () => {
    const dir = cacheDir();
    mkdirSync(join(dir, "kernel"), { recursive: true });
    const stale = tree(join(dir, "kernel"), `.build-b97c377a4c1b0bbc-${deadPid()}-p999-mxb5c8qe`);
    // a cached kernel for these inputs (when the source package is here), so nothing is built
    const version: string | null = await kernelSourceVersion().catch(() => null);
    if (version) {
      const key = kernelCacheKey({
        fragment: KERNEL_FRAGMENT,
        sourceVersion: version,
        recipeVersion: KERNEL_RECIPE_VERSION,
      });
      mkdirSync(join(dir, "kernel", key), { recursive: true });
      writeFileSync(join(dir, "kernel", key, "vmlinux"), "fake");
    }
    const said: string[] = [];
    const built = await buildKernel({ cacheDir: dir, onProgress: (l: string) => said.push(l) }).catch(
      (e: Error) => e,
    );
    if (version) expect(built).toBe(join(dir, "kernel", readdirSync(join(dir, "kernel")).join(), "vmlinux"));
    expect(existsSync(stale)).toBe(false);
    expect(said.join("\n")).toContain("its builder is gone");
  });
});
