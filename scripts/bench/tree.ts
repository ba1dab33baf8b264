/**
 * Generated workspace trees for the host-crossing sections: deterministic (seeded PRNG), a
 * few directories deep, mixed sizes; text files look like source (lines of words), binary
 * files are random bytes (incompressible, like build outputs or assets).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TreeGroup {
  count: number;
  minBytes: number;
  maxBytes: number;
  kind: "text" | "binary";
}

export interface TreeInfo {
  dir: string;
  files: number;
  bytes: number;
  /** root-relative paths of the text files, in creation order */
  textPaths: string[];
}

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
 * Write the groups' files into `dir`, spread over `fanout[0]` × `fanout[1]` × … leaf
 * directories (src/a3/b7/… style names), round-robin so every leaf gets a mix.
 */
export function generateTree(dir: string, groups: TreeGroup[], fanout: number[], seed = 42): TreeInfo {
  const rand = prng(seed);
  const leaves: string[] = [];
  const walk = (prefix: string, depth: number) => {
    if (depth === fanout.length) {
      leaves.push(prefix);
      return;
    }
    for (let i = 0; i < fanout[depth]!; i++) walk(`${prefix}/${"abcdefgh"[depth]}${i}`, depth + 1);
  };
  walk("src", 0);
  for (const l of leaves) mkdirSync(join(dir, l), { recursive: true });
  let files = 0;
  let bytes = 0;
  const textPaths: string[] = [];
  for (const g of groups) {
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
  return { dir, files, bytes, textPaths };
}
