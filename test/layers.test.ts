/**
 * The layer rule, stated once (LAYERS below) and checked on every import in src/ and guest/,
 * tests included: a module may import its own folder and folders of the same or a lower
 * rank, never a higher one. guest/ (the agent, compiled for the VM) may import only itself
 * and src/protocol, and nothing in src/ imports guest/. Imports of files outside src/ and
 * guest/ (package.json, rootfs/ recipes) and of packages are not layers and are not checked.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { Glob } from "bun";

const ROOT = join(import.meta.dir, "..");

/** Higher imports lower. A new folder under src/ must be given a rank here. */
export const LAYERS: Record<string, number> = {
  "src/main.ts": 7, // entry point
  "src/cli": 6, // the three faces
  "src/mcp": 6,
  "src/sdk": 6,
  "src/operations": 5, // the operations table
  "src/supervisor": 5, // the per-workspace process (started through the CLI)
  "src/manager": 4, // records, lifecycle, clients of the supervisor
  "src/env": 3, // environments: catalog, store, build, OCI
  "src/vmm": 2, // backends
  "src/base": 1, // host basics: paths, atomic writes, locks
  "src/protocol": 0, // the host↔guest contract (shared with guest/)
};
const GUEST_MAY_IMPORT = new Set(["guest", "src/protocol"]);

/** "guest", "src/<folder>", "src/main.ts", or null for anything outside src/ and guest/. */
export function moduleOf(path: string): string | null {
  const parts = path.split("/");
  if (parts[0] === "guest") return "guest";
  if (parts[0] !== "src") return null;
  return parts.length === 2 ? path : `src/${parts[1]}`;
}

const IMPORT =
  /(?:^|[;\s])(?:import|export)\s[^"'`;]*?from\s*["']([^"']+)["']|\bimport\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** Relative import specifiers of a source text (comments are not stripped: none match). */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec?.startsWith(".")) out.push(spec);
  }
  return out;
}

/** Why `from` may not import `to` (both repository-relative paths), or null if it may. */
export function violation(from: string, to: string): string | null {
  const a = moduleOf(from);
  const b = moduleOf(to);
  if (a === null || b === null || a === b) return null;
  if (a === "guest") return GUEST_MAY_IMPORT.has(b) ? null : `guest/ may import only src/protocol, not ${b}`;
  if (b === "guest") return `${a} imports guest/ (the agent shares only src/protocol)`;
  const ra = LAYERS[a];
  const rb = LAYERS[b];
  if (ra === undefined) return `${a} has no rank in LAYERS`;
  if (rb === undefined) return `${b} has no rank in LAYERS`;
  return rb > ra ? `${a} (rank ${ra}) imports ${b} (rank ${rb}): up the layers` : null;
}

function sources(): string[] {
  return [...new Glob("{src,guest}/**/*.{ts,tsx}").scanSync(ROOT)].sort();
}

describe("layers", () => {
  test("the checker parses every import form and judges each kind of edge", () => {
    const text = [
      'import { a } from "./a.ts";',
      'import type { B } from "../vmm/types.ts";',
      "import {\n  c,\n  d,\n} from '../manager/paths.ts';",
      'export { e } from "../../guest/fs.ts";',
      'export * from "./f.ts";',
      'import "./side-effect.ts";',
      'const g = await import("../env/store.ts");',
      'import * as v from "valibot";',
    ].join("\n");
    expect(importsOf(text)).toEqual([
      "./a.ts",
      "../vmm/types.ts",
      "../manager/paths.ts",
      "../../guest/fs.ts",
      "./f.ts",
      "./side-effect.ts",
      "../env/store.ts",
    ]);
    // allowed: down, same folder, same rank, data outside the tree, guest → protocol
    expect(violation("src/manager/boot.ts", "src/vmm/types.ts")).toBeNull();
    expect(violation("src/vmm/qemu/argv.ts", "src/vmm/types.ts")).toBeNull();
    expect(violation("src/cli/index.ts", "src/mcp/server.ts")).toBeNull();
    expect(violation("src/protocol/version.ts", "package.json")).toBeNull();
    expect(violation("guest/server.ts", "src/protocol/frame.ts")).toBeNull();
    // refused: up, into guest/, guest beyond protocol, an unranked folder
    expect(violation("src/protocol/connection.ts", "src/vmm/types.ts")).toContain("up the layers");
    expect(violation("src/env/store.ts", "src/manager/atomic.ts")).toContain("up the layers");
    expect(violation("src/operations/disk.ts", "guest/fs.ts")).toContain("imports guest/");
    expect(violation("guest/server.ts", "src/vmm/types.ts")).toContain("only src/protocol");
    expect(violation("src/newthing/x.ts", "src/protocol/frame.ts")).toContain("no rank");
  });

  test("no import in src/ or guest/ runs up the layers", () => {
    const files = sources();
    expect(files.length).toBeGreaterThan(100);
    const found: string[] = [];
    let checked = 0;
    for (const file of files) {
      for (const spec of importsOf(readFileSync(join(ROOT, file), "utf8"))) {
        const target = relative(ROOT, resolve(ROOT, dirname(file), spec));
        checked++;
        const why = violation(file, target);
        if (why) found.push(`${file} → ${target}: ${why}`);
      }
    }
    expect(checked).toBeGreaterThan(500);
    expect(found).toEqual([]);
  });

  test("every folder under src/ has a rank", () => {
    const modules = new Set(sources().map((f) => moduleOf(f)!));
    modules.delete("guest");
    expect([...modules].filter((m) => LAYERS[m] === undefined)).toEqual([]);
  });
});
