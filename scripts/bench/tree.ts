/**
 * Generated workspace trees for the host-crossing sections (§6–§8): deterministic (seeded
 * PRNG), a few directories deep, mixed sizes; text files look like source (lines of words),
 * binary files are random bytes (incompressible, like build outputs or assets). Each tree is
 * generated once per bench run, under the bench's own PYRO_HOME.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BenchCtx } from "./lib.ts";
import { sh } from "./lib.ts";

export interface TreeGroup {
  count: number;
  minBytes: number;
  maxBytes: number;
  kind: "text" | "binary";
}

export interface TreeSpec {
  name: string;
  groups: TreeGroup[];
  /** directories per level under src/ (e.g. [5, 10, 10] → 500 leaf directories, 4 levels deep) */
  fanout: number[];
}

export interface TreeInfo {
  dir: string;
  files: number;
  /** file content bytes (what MB/s figures count) */
  bytes: number;
  dirs: number;
  /** root-relative paths of the text files, in creation order (group by group) */
  textPaths: string[];
  /** a tar of the tree (made on first use by tarOf) */
  tar?: string;
}

const K = 1024;
const M = 1024 * 1024;

/** §6: 10,000 files, ~50 MB, like a mid-sized source repository. */
export const DIFF_TREE: TreeSpec = {
  name: "t10k",
  groups: [
    { count: 7000, minBytes: 200, maxBytes: 3 * K, kind: "text" },
    { count: 2500, minBytes: 2 * K, maxBytes: 12 * K, kind: "text" },
    { count: 470, minBytes: 12 * K, maxBytes: 96 * K, kind: "text" },
    { count: 30, minBytes: 96 * K, maxBytes: 512 * K, kind: "binary" },
  ],
  fanout: [5, 10, 10],
};

/** §7: ~200 MB in 3,326 files: source files plus a few multi-MB binaries. */
export const TRANSFER_TREE: TreeSpec = {
  name: "t200m",
  groups: [
    { count: 3000, minBytes: 1 * K, maxBytes: 32 * K, kind: "text" },
    { count: 300, minBytes: 64 * K, maxBytes: 512 * K, kind: "text" },
    { count: 26, minBytes: 2 * M, maxBytes: 8 * M, kind: "binary" },
  ],
  fanout: [4, 5, 5],
};

/** §8: ~50 MB in 1,010 files. */
export const SNAPSHOT_TREE: TreeSpec = {
  name: "t50m",
  groups: [
    { count: 1000, minBytes: 1 * K, maxBytes: 32 * K, kind: "text" },
    { count: 10, minBytes: 2 * M, maxBytes: 8 * M, kind: "binary" },
  ],
  fanout: [4, 5],
};

/** §8: a small project, ~100 KB in 24 files. */
export const SMALL_TREE: TreeSpec = {
  name: "small",
  groups: [{ count: 24, minBytes: 1 * K, maxBytes: 10 * K, kind: "text" }],
  fanout: [3],
};

/** xorshift32: fast, deterministic, good enough for filler. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const WORDS =
  "const let return if else for while function import export from await async new this value index count result error path file data buffer stream read write open close node tree entry item list map set key name size mode time start end next prev left right true false null undefined".split(
    " ",
  );

/** Text of about `bytes` bytes: indented lines of words, each ending in a newline. */
export function textOf(rand: () => number, bytes: number): string {
  const lines: string[] = [];
  let total = 0;
  while (total < bytes) {
    const indent = "  ".repeat(rand() % 4);
    const n = 3 + (rand() % 9);
    const words: string[] = [];
    for (let i = 0; i < n; i++) words.push(WORDS[rand() % WORDS.length]!);
    const line = `${indent}${words.join(" ")};`;
    lines.push(line);
    total += line.length + 1;
  }
  return `${lines.join("\n")}\n`;
}

export function binaryOf(rand: () => number, bytes: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(bytes / 4));
  for (let i = 0; i < words.length; i++) words[i] = rand();
  return new Uint8Array(words.buffer, 0, bytes);
}

/** Log-uniform size in [min, max] (many small files, a few large, like real trees). */
function sizeIn(rand: () => number, min: number, max: number): number {
  if (max <= min) return min;
  const u = rand() / 2 ** 32;
  return Math.round(Math.exp(Math.log(min) + u * (Math.log(max) - Math.log(min))));
}

/**
 * Write the spec's files into `dir`, spread round-robin over the leaf directories
 * (src/a3/b7/c1 style names), so every leaf gets a mix of sizes.
 */
export function generateTree(dir: string, spec: TreeSpec, seed = 42): TreeInfo {
  const rand = prng(seed);
  const leaves: string[] = [];
  const walk = (prefix: string, depth: number) => {
    if (depth === spec.fanout.length) {
      leaves.push(prefix);
      return;
    }
    for (let i = 0; i < spec.fanout[depth]!; i++) walk(`${prefix}/${"abcdefgh"[depth]}${i}`, depth + 1);
  };
  walk("src", 0);
  for (const l of leaves) mkdirSync(join(dir, l), { recursive: true });
  let files = 0;
  let bytes = 0;
  const textPaths: string[] = [];
  for (const g of spec.groups) {
    for (let i = 0; i < g.count; i++) {
      const leaf = leaves[files % leaves.length]!;
      const size = sizeIn(rand, g.minBytes, g.maxBytes);
      const rel = `${leaf}/${g.kind === "text" ? `f${files}.ts` : `blob${files}.bin`}`;
      if (g.kind === "text") {
        const t = textOf(rand, size);
        writeFileSync(join(dir, rel), t);
        bytes += Buffer.byteLength(t);
        textPaths.push(rel);
      } else {
        writeFileSync(join(dir, rel), binaryOf(rand, size));
        bytes += size;
      }
      files++;
    }
  }
  // directories: src, the inner levels and the leaves
  let dirs = 1;
  let level = 1;
  for (const f of spec.fanout) {
    level *= f;
    dirs += level;
  }
  return { dir, files, bytes, dirs, textPaths };
}

const made = new Map<string, TreeInfo>();

/** The spec's tree under the bench home, generated on first use in this run. */
export function treeFor(ctx: BenchCtx, spec: TreeSpec): TreeInfo {
  const dir = join(ctx.home, "trees", spec.name);
  const key = `${ctx.home}\0${spec.name}`;
  const have = made.get(key);
  if (have && existsSync(dir)) return have;
  rmSync(dir, { recursive: true, force: true });
  const t = performance.now();
  const info = generateTree(dir, spec);
  ctx.log(
    `tree ${spec.name}: ${info.files} files, ${mb(info.bytes)} in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
  made.set(key, info);
  return info;
}

/** A tar of the tree, alone in its own directory (so a directory push moves it as one file). */
export async function tarOf(ctx: BenchCtx, tree: TreeInfo): Promise<string> {
  if (tree.tar && existsSync(tree.tar)) return tree.tar;
  const dir = `${tree.dir}-tar`;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "tree.tar");
  await sh(["tar", "-cf", file, "-C", tree.dir, "."], { env: ctx.env });
  tree.tar = file;
  return file;
}

/** Bytes as decimal megabytes. */
export const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
/** Throughput in decimal MB/s. */
export const mbps = (bytes: number, ms: number) =>
  Number.isFinite(ms) && ms > 0 ? `${(bytes / 1e6 / (ms / 1000)).toFixed(1)} MB/s` : "—";
