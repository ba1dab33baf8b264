/** Helpers for the archive and guest fs tests (not part of the runtime surface). */
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function tempDir(tag: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `pyro-${tag}-`));
  const cleanup = async () => {
    // read-only directories from mode tests would stop rm when not running as root
    Bun.spawnSync(["chmod", "-R", "u+rwX", path]);
    await rm(path, { recursive: true, force: true });
  };
  return { path, cleanup };
}

export async function collect(
  src: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
): Promise<Uint8Array<ArrayBuffer>> {
  const parts: Uint8Array[] = [];
  for await (const c of src as AsyncIterable<Uint8Array>) parts.push(c);
  return Buffer.concat(parts);
}

/** Feed bytes in chunks of the given sizes (cycled), or of random sizes from `rand`. */
export async function* chunked(bytes: Uint8Array, size: number | (() => number)): AsyncGenerator<Uint8Array> {
  let pos = 0;
  while (pos < bytes.length) {
    const n = Math.max(1, typeof size === "number" ? size : size());
    yield bytes.subarray(pos, pos + n);
    pos += n;
  }
}

/** Seeded PRNG so failures reproduce. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export interface TreeRecord {
  path: string;
  type: string;
  mode?: string;
  content?: string;
  link?: string;
  mtime?: number;
}

/** Everything observable about a tree (names, types, modes, contents, link targets, mtimes). */
export async function snapshotTree(
  root: string,
  opts: { mtimes?: boolean; dirMtimes?: boolean } = {},
): Promise<TreeRecord[]> {
  const out: TreeRecord[] = [];
  const walk = async (rel: string) => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = join(root, r);
      const st = await lstat(abs);
      const rec: TreeRecord = { path: r, type: "other" };
      if (st.isSymbolicLink()) {
        rec.type = "symlink";
        rec.link = await readlink(abs);
      } else {
        rec.mode = (st.mode & 0o7777).toString(8);
        if (st.isDirectory()) rec.type = "dir";
        else if (st.isFile()) {
          rec.type = "file";
          rec.content = Bun.hash(await readFile(abs)).toString(16);
        }
        if (opts.mtimes && (opts.dirMtimes || !st.isDirectory())) rec.mtime = Math.floor(st.mtimeMs / 1000);
      }
      out.push(rec);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk("");
  return out;
}

/** Run a command; throws with stderr on failure. */
export function run(argv: string[], opts: { cwd?: string; stdin?: Uint8Array } = {}): Uint8Array {
  const p = Bun.spawnSync(argv, { cwd: opts.cwd, stdin: opts.stdin, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${argv.join(" ")} failed (${p.exitCode}): ${p.stderr.toString()}`);
  return new Uint8Array(p.stdout);
}

/** Expect a promise to reject with a PyroError of this code; returns the error. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<Error & { code: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as Error & { code: string };
    if (e.code !== code) throw new Error(`expected ${code}, got ${e.code}: ${e.message}`);
    return e;
  }
  throw new Error(`expected ${code}, but it succeeded`);
}

/**
 * A child process exchanging `a` and `b` (names in `dir`) with renameat2(RENAME_EXCHANGE)
 * as fast as it can until killed, so each name is always one or the other, never missing.
 * With a directory and a symlink to somewhere else, a path through `a` keeps flipping
 * between the two: the directory↔symlink swap race. It exits 3 if an exchange fails.
 */
export function swapper(dir: string, a: string, b: string): Bun.Subprocess {
  const js = `const { dlopen, FFIType, ptr } = require("bun:ffi");
    const c = dlopen("libc.so.6", { renameat2: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 } }).symbols;
    const a = Buffer.from(${JSON.stringify(`${a}\0`)}), b = Buffer.from(${JSON.stringify(`${b}\0`)});
    for (;;) if (c.renameat2(-100, ptr(a), -100, ptr(b), 2) !== 0) process.exit(3);`;
  return Bun.spawn([process.execPath, "-e", js], { cwd: dir, stdout: "ignore", stderr: "ignore" });
}
