import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CATALOG, DEFAULT_ENVIRONMENT, findRecipe } from "./catalog.ts";

const RECIPES = join(import.meta.dir, "../../rootfs/recipes");

describe("recipes", () => {
  test("every recipe file has exactly the documented shape and is in the catalog", () => {
    const files = readdirSync(RECIPES).filter((f) => f.endsWith(".json"));
    expect(files.length).toBe(CATALOG.length);
    for (const file of files) {
      const r = JSON.parse(readFileSync(join(RECIPES, file), "utf8"));
      expect(Object.keys(r).sort()).toEqual(["description", "name", "packages", "suite", "version"]);
      expect(r.name).toMatch(/^[a-z0-9]+:[a-z0-9.-]+$/);
      expect(file).toBe(`${r.name.replace(":", "-")}.json`);
      expect(r.version).toMatch(/^\d+$/);
      expect(r.suite).toBe("bookworm");
      expect(r.description.length).toBeGreaterThan(10);
      expect(Array.isArray(r.packages)).toBe(true);
      for (const p of r.packages) expect(p).toMatch(/^[a-z0-9][a-z0-9+.-]+$/);
      expect(new Set(r.packages).size).toBe(r.packages.length);
      // pyro-init execs tini and calls mount; both must be in every image.
      expect(r.packages).toContain("tini");
      expect(r.packages).toContain("mount");
      expect(findRecipe(r.name)).toEqual(r);
    }
  });

  test("catalog names are unique and the default exists", () => {
    const names = CATALOG.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(["debian:12", "debian:12-base", "debian:12-build"]);
    expect(findRecipe(DEFAULT_ENVIRONMENT)?.packages).toContain("git");
    expect(findRecipe("debian:12-build")?.packages).toEqual(
      expect.arrayContaining(["git", "build-essential", "python3", "make", "curl"]),
    );
    expect(findRecipe("nope")).toBeUndefined();
  });
});
