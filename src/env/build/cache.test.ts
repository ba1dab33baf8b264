import { describe, expect, test } from "bun:test";
import { cacheKey } from "./cache.ts";
import { treeCacheKey } from "./debootstrap.ts";
import { KERNEL_RECIPE_VERSION, kernelCacheKey } from "./kernel.ts";

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
