/**
 * The diff baseline: an immutable snapshot of the workspace root, kept as a git repository
 * in `<stateDir>/baseline.git` (a bare gitdir whose work tree is the root; the state dir is
 * outside /workspace, so nothing of it is visible there). Captured at create and again
 * whenever the host asks (reset, later); a new capture replaces the previous one.
 *
 * What is stored:
 * - one blob per regular file (mode 100644, or 100755 when the owner may execute it) and per
 *   symlink (mode 120000, the blob is the link target); a capture writes them as loose objects
 *   (zlib level 1 like git's default, temp file + rename so a crash never leaves a truncated
 *   object; files over 8 MiB are streamed, never held in memory);
 * - a seeded create's blobs instead stay raw in a seed pack (below);
 * - trees and one commit written with isomorphic-git, `refs/heads/baseline` (HEAD) → it;
 * - the git index (DIRC version 2, the format git itself reads) with the baseline's oids and
 *   each file's stat data at capture time. diff.ts uses it as a stat cache; system git can
 *   use it too: `git --git-dir=<state>/baseline.git --work-tree=/workspace status`. The
 *   index format and stat signatures are git-index.ts.
 *
 * The seed pack (decision, measured; docs/benchmarks.md §7): a seeded create takes its baseline
 * from the seed stream (archive.import with baseline: true). Profiled in a TCG guest (1 vCPU,
 * per 32 MiB): sha1 0.46 s, zlib level 1 1.5 s, level 0 6.7 s, adler32 1.6 s; before this, the
 * stream path hashed AND deflated every file into a loose object (one temp file + rename per
 * object, deflate on a thread pool the single vCPU cannot run in parallel) and measured slower
 * (94 s for 200 MB) than extracting and then reading everything back (69 s). Now the guest
 * only hashes each file as it passes (sha1, the cheapest step) and appends its bytes, raw, to
 * one sequential file `baseline.git/pyro-seed/<id>.pack`; `<id>.idx` maps oid → (offset, size).
 * No deflate, no per-object files. A git packfile was not used: its per-object zlib framing
 * needs adler32 and its trailer a second sha1 over everything, both measured too slow here.
 * readBaselineBlob() reads a loose object if there is one, else the pack's bytes, checked
 * against the oid (a damaged pack is IO_ERROR, never other content). Crash safety: the pack is
 * written under a temp name and renamed, then its index (the index's presence publishes it),
 * and only then are the commit and ref written; a pack without its index is never read and
 * any leftover is removed by the next capture. The next capture (reset, baseline.capture)
 * writes loose objects again and drops every seed pack. What system git can do with it: the
 * index and the trees are complete, so `git status` works (it reads no blob); `git diff`,
 * `cat-file` or `fsck` of a seeded blob do not find it (git does not know this pack format)
 * until the next capture.
 *
 * Like git, the tree holds files and symlinks only: empty directories, fifos, sockets and
 * devices are not part of the baseline. `.git` directories are left out, as git itself does,
 * and so is the state dir if it happens to lie inside the root. Names that
 * are not valid UTF-8 cannot be represented and are skipped.
 *
 * Racy entries: a stat signature only proves a file unchanged if the file could not have
 * been written again within the same timestamp tick after we read it. Every index carries
 * the time its scan started as its own mtime (git's reference time too); an entry whose mtime or
 * ctime is within RACY_MARGIN_MS of that time is not trusted and gets hashed again (git's
 * "racily clean" rule, with a margin that also covers filesystems with 1 s timestamps).
 */

import * as nodefs from "node:fs";
import { constants as C, type Stats } from "node:fs";
import { rm } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createDeflate, deflateSync } from "node:zlib";
import git from "isomorphic-git";
import { type FileObserver, fsError, type UnpackObserver } from "../src/protocol/archive/index.ts";
import { PyroError } from "../src/protocol/errors.ts";
import {
  comparePaths,
  forgetIndexMemo,
  gitModeOf,
  type IndexEntry,
  MODE_LINK,
  modeString,
  sigOf,
  writeIndexFileMemo,
} from "./git-index.ts";
import { realRoot } from "./paths.ts";

const {
  closeSync,
  existsSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} = nodefs;

export const BASELINE_GITDIR = "baseline.git";
/** diff.ts's own stat cache for paths that differ from the baseline (same file format). */
export const DIFF_CACHE_FILE = "diff-cache.idx";
export const BASELINE_REF = "refs/heads/baseline";
/** Files up to this size are read whole; larger ones are streamed. */
export const STREAM_THRESHOLD = 8 * 1024 * 1024;

export const ZERO_OID = "0".repeat(40);

const enc = new TextEncoder();

/** The blob id git would give these bytes. */
export function blobOid(data: Uint8Array): string {
  const h = new Bun.CryptoHasher("sha1");
  h.update(`blob ${data.byteLength}\0`);
  h.update(data);
  return h.digest("hex");
}

// ---------------------------------------------------------------------------------------
// Reading workspace files without following links swapped in behind our back

/** Read a regular file whole (O_NOFOLLOW, O_NONBLOCK: a fifo swapped in cannot block us). */
export function readRegularFile(abs: string, shown: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
  } catch (err) {
    throw fsError(err, shown);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new PyroError("INVALID_INPUT", `not a regular file: ${shown}`);
    const chunks: Uint8Array[] = [];
    let total = 0;
    // one byte more than the size: a short read then proves we saw the end
    let want = Math.max(st.size, 0) + 1;
    for (;;) {
      const buf = new Uint8Array(want);
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, null);
        if (n === 0) break;
        got += n;
      }
      chunks.push(buf.subarray(0, got));
      total += got;
      if (got < buf.length) break; // EOF
      want = 1024 * 1024; // grew while we read: keep going
    }
    if (chunks.length === 1) return chunks[0]!;
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  } catch (err) {
    throw fsError(err, shown);
  } finally {
    closeSync(fd);
  }
}

/** Blob id of a large file, streamed in 1 MiB chunks; `onChunk` sees every chunk. */
async function streamFile(
  abs: string,
  shown: string,
  onChunk: (c: Uint8Array) => void | Promise<void>,
): Promise<number> {
  let fd: number;
  try {
    fd = openSync(abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
  } catch (err) {
    throw fsError(err, shown);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new PyroError("INVALID_INPUT", `not a regular file: ${shown}`);
    let total = 0;
    for (;;) {
      const buf = new Uint8Array(1024 * 1024);
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) return total;
      total += n;
      await onChunk(buf.subarray(0, n));
    }
  } catch (err) {
    throw fsError(err, shown);
  } finally {
    closeSync(fd);
  }
}

/** Blob id of a workspace file or symlink; small files come back with their content. */
export async function hashWorkspaceEntry(
  abs: string,
  st: Stats,
  shown: string,
): Promise<{ oid: string; content?: Uint8Array }> {
  if (st.isSymbolicLink()) {
    const content = readLinkBytes(abs, shown);
    return { oid: blobOid(content), content };
  }
  if (st.size <= STREAM_THRESHOLD) {
    const content = readRegularFile(abs, shown);
    return { oid: blobOid(content), content };
  }
  for (let attempt = 0; ; attempt++) {
    const size = lstatSync(abs).size;
    const h = new Bun.CryptoHasher("sha1");
    h.update(`blob ${size}\0`);
    const got = await streamFile(abs, shown, (c) => {
      h.update(c);
    });
    if (got === size) return { oid: h.digest("hex") };
    if (attempt >= 3) throw new PyroError("IO_ERROR", `file keeps changing while being read: ${shown}`);
  }
}

export function readLinkBytes(abs: string, shown: string): Uint8Array {
  try {
    return new Uint8Array(readlinkSync(abs, { encoding: "buffer" }));
  } catch (err) {
    throw fsError(err, shown);
  }
}

// ---------------------------------------------------------------------------------------
// Walking the root

export const yieldNow = () => new Promise<void>((r) => setImmediate(r));

/**
 * Visit every regular file and symlink under rootReal (never through a symlink), in no
 * particular order. `skip` holds real absolute directories to leave out. Yields to the event
 * loop now and then so a large tree does not stall the agent's other streams; `visit` may
 * return a promise, which is awaited.
 */
export async function walkTree(
  rootReal: string,
  skip: string[],
  visit: (path: string, abs: string, st: Stats, mode: number) => void | Promise<void>,
): Promise<void> {
  const skipSet = new Set(skip);
  const stack: string[] = [""];
  let sinceYield = 0;
  while (stack.length > 0) {
    const rel = stack.pop()!;
    const dir = rel ? `${rootReal}/${rel}` : rootReal;
    let dirents: nodefs.Dirent[];
    try {
      dirents = readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") continue; // vanished meanwhile
      throw fsError(err, rel ? `/workspace/${rel}` : "/workspace");
    }
    for (const d of dirents) {
      const name = d.name;
      if (name.includes("\ufffd")) continue; // not valid UTF-8: git cannot name it here
      const path = rel ? `${rel}/${name}` : name;
      const abs = `${dir}/${name}`;
      if (d.isDirectory()) {
        // Like git itself, never track a repository's own .git directory: its objects
        // would flood every diff, and git apply refuses such paths.
        if (name === ".git") continue;
        if (!skipSet.has(abs)) stack.push(path);
        continue;
      }
      if (!d.isFile() && !d.isSymbolicLink() && knownType(d)) continue; // fifo, socket, device
      // (an unknown type, which some filesystems report, is decided by lstat)
      let st: Stats;
      try {
        st = lstatSync(abs);
      } catch {
        continue; // vanished meanwhile
      }
      if (st.isDirectory()) {
        if (!skipSet.has(abs)) stack.push(path);
        continue;
      }
      const mode = gitModeOf(st);
      if (mode === null) continue;
      const r = visit(path, abs, st, mode);
      if (r) await r;
      if (++sinceYield >= 4096) {
        sinceYield = 0;
        await yieldNow();
      }
    }
  }
}

function knownType(d: nodefs.Dirent): boolean {
  return d.isFIFO() || d.isSocket() || d.isBlockDevice() || d.isCharacterDevice();
}

/** The state dir to leave out of walks when it lies inside the root (normally it does not). */
export function skipListFor(rootReal: string, stateReal: string | undefined): string[] {
  if (!stateReal) return [];
  return stateReal.startsWith(`${rootReal}/`) ? [stateReal] : [];
}

// ---------------------------------------------------------------------------------------
// Objects

function tmpSuffix(): string {
  return `${process.pid}-${Math.random().toString(36).slice(2)}`;
}

export function objectPath(gitdir: string, oid: string): string {
  return `${gitdir}/objects/${oid.slice(0, 2)}/${oid.slice(2)}`;
}

function placeObject(gitdir: string, oid: string, tmp: string): void {
  const final = objectPath(gitdir, oid);
  if (existsSync(final)) {
    unlinkSync(tmp);
    return;
  }
  mkdirSync(`${gitdir}/objects/${oid.slice(0, 2)}`, { recursive: true });
  renameSync(tmp, final);
}

/** Store bytes as a loose blob; returns its oid. */
export function writeBlobBytes(gitdir: string, data: Uint8Array): string {
  const oid = blobOid(data);
  if (existsSync(objectPath(gitdir, oid))) return oid;
  const header = enc.encode(`blob ${data.byteLength}\0`);
  const raw = new Uint8Array(header.length + data.byteLength);
  raw.set(header);
  raw.set(data, header.length);
  const tmp = `${gitdir}/objects/tmp-${tmpSuffix()}`;
  writeFileSync(tmp, deflateSync(raw, { level: 1 }), { mode: 0o444 });
  placeObject(gitdir, oid, tmp);
  return oid;
}

/** Store a large file as a loose blob without holding it in memory. */
async function writeBlobStreaming(gitdir: string, abs: string, shown: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const size = lstatSync(abs).size;
    const h = new Bun.CryptoHasher("sha1");
    const header = enc.encode(`blob ${size}\0`);
    h.update(header);
    const tmp = `${gitdir}/objects/tmp-${tmpSuffix()}`;
    let got = 0;
    const chunks = (async function* (): AsyncGenerator<Uint8Array> {
      yield header;
      let fd: number;
      try {
        fd = openSync(abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
      } catch (err) {
        throw fsError(err, shown);
      }
      try {
        for (;;) {
          const buf = new Uint8Array(1024 * 1024);
          const n = readSync(fd, buf, 0, buf.length, null);
          if (n === 0) return;
          got += n;
          const c = buf.subarray(0, n);
          h.update(c);
          yield c;
        }
      } finally {
        closeSync(fd);
      }
    })();
    try {
      await pipeline(
        Readable.from(chunks),
        createDeflate({ level: 1 }),
        nodefs.createWriteStream(tmp, { mode: 0o444 }),
      );
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {}
      throw fsError(err, shown);
    }
    if (got === size) {
      const oid = h.digest("hex");
      placeObject(gitdir, oid, tmp);
      return oid;
    }
    unlinkSync(tmp);
    if (attempt >= 3) throw new PyroError("IO_ERROR", `file keeps changing while being read: ${shown}`);
  }
}

/** Content of a baseline blob. */
export async function readBaselineBlob(gitdir: string, oid: string): Promise<Uint8Array> {
  if (!existsSync(objectPath(gitdir, oid))) {
    const packed = readSeedPackBlob(gitdir, oid);
    if (packed) return packed;
  }
  const { blob } = await git.readBlob({ fs: nodefs, gitdir, oid });
  return blob;
}

// ---------------------------------------------------------------------------------------
// Serialising work on one state dir (capture, diff) and one root (patch)

const locks = new Map<string, Promise<unknown>>();

export function serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  const tail = next.then(
    () => {},
    () => {},
  );
  locks.set(key, tail);
  void tail.then(() => {
    if (locks.get(key) === tail) locks.delete(key);
  });
  return next;
}

/** The state dir's canonical path, created (mode 0700) when asked. */
export function stateDirReal(stateDir: string, create: boolean): string | undefined {
  try {
    if (create) mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    return realpathSync(stateDir);
  } catch (err) {
    if (!create && (err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fsError(err, "agent state directory");
  }
}

export function noBaseline(): PyroError {
  return new PyroError("SNAPSHOT_NOT_FOUND", "no baseline has been captured for this workspace", {
    hint: "capture one with baseline.capture",
  });
}

// ---------------------------------------------------------------------------------------
// Capture

export interface CaptureResult {
  /** files and symlinks in the baseline */
  files: number;
  /** the root tree's oid */
  tree: string;
  commit: string;
}

export async function captureBaseline(root: string, stateDir: string): Promise<CaptureResult> {
  const stateReal = stateDirReal(stateDir, true)!;
  const rootReal = await realRoot(root);
  // not while a patch is being applied (patch.ts takes the same lock), nor during a diff
  return serialized(`patch:${rootReal}`, () =>
    serialized(`state:${stateReal}`, async () => {
      await initGitdir(stateReal);
      return (await capture(rootReal, stateReal, null)).result;
    }),
  );
}

/**
 * A capture fed by an import (a seeded create): `run` extracts a tar with the observer this
 * hands it, which hashes each regular file's bytes as they stream past, appends them to the
 * seed pack (see the header) and remembers the file's identity (inode, size, mtime right after
 * it was written). The capture that follows walks the root with lstat only and takes a
 * remembered blob for every file whose identity still matches, so no file is read back; anything else (a file that was there before,
 * changed since, or a symlink: its target is one readlink) is read as in a plain capture.
 * `files_read` counts those. The result is the same baseline a plain capture makes.
 */
export async function captureBaselineFromImport<T>(
  root: string,
  stateDir: string,
  run: (observer: UnpackObserver) => Promise<T>,
): Promise<{ result: T; baseline: CaptureResult & { files_read: number } }> {
  const stateReal = stateDirReal(stateDir, true)!;
  const rootReal = await realRoot(root);
  return serialized(`patch:${rootReal}`, () =>
    serialized(`state:${stateReal}`, async () => {
      const gitdir = await initGitdir(stateReal);
      const known = new Map<string, Known>();
      const pack = new SeedPackWriter(`${gitdir}/${SEED_PACK_DIR}`);
      let result: T;
      let packId: string | undefined;
      try {
        result = await run(importObserver(pack, known));
        packId = pack.finish();
      } catch (err) {
        pack.abort();
        throw err;
      }
      // a pack that could not be written whole stores nothing: those files are read back
      if (!packId) known.clear();
      const { result: baseline, filesRead } = await capture(rootReal, stateReal, known, packId);
      return { result, baseline: { ...baseline, files_read: filesRead } };
    }),
  );
}

/** A file an import wrote: its blob (already stored) and its identity when written. */
interface Known {
  oid: string;
  ino: number;
  size: number;
  mtimeMs: number;
}

/** Paths a capture would never take (walkTree's rules): no blob is stored for them. */
const untracked = (path: string) => path.includes("\ufffd") || path.split("/").includes(".git");

/** Bytes hashed and appended between two turns of the event loop (see importObserver). */
const YIELD_EVERY_BYTES = 1024 * 1024;

function importObserver(pack: SeedPackWriter, known: Map<string, Known>): UnpackObserver {
  // The extraction loop runs on already-buffered tar data as one chain of microtasks; the
  // work added here (sha1, one more write) would keep the agent from reading its connection
  // (pings included: the supervisor's liveness deadline) for longer under TCG. A macrotask
  // turn every YIELD_EVERY_BYTES lets I/O in.
  let sinceYield = 0;
  return {
    file(path, size): FileObserver | undefined {
      known.delete(path); // whatever was written here before is replaced
      if (untracked(path)) return undefined;
      const h = new Bun.CryptoHasher("sha1");
      h.update(`blob ${size}\0`);
      const offset = pack.offset;
      let got = 0;
      return {
        async chunk(c) {
          got += c.byteLength;
          h.update(c);
          pack.append(c);
          sinceYield += c.byteLength;
          if (sinceYield >= YIELD_EVERY_BYTES) {
            sinceYield = 0;
            await yieldNow();
          }
        },
        done(st) {
          // not what the header said (or appended short): read it back in the capture
          if (got !== size || st.size !== size || pack.offset !== offset + size) return;
          const oid = h.digest("hex");
          pack.add(oid, offset, size);
          known.set(path, { oid, ...st });
        },
        abort() {},
      };
    },
    hardlink(path, target) {
      const k = known.get(target);
      if (k && !untracked(path)) known.set(path, k);
      else known.delete(path);
    },
  };
}

// ---------------------------------------------------------------------------------------
// The seed pack: a seeded create's blobs, stored raw (see the header)

/** Under the gitdir (git ignores it): `<id>.pack` (blob contents back to back), `<id>.idx`. */
export const SEED_PACK_DIR = "pyro-seed";
const IDX_MAGIC = "pyro-seed-idx 1";

/** The pack being written during an import: a temp file, renamed by finish(). */
class SeedPackWriter {
  offset = 0;
  readonly entries = new Map<string, [number, number]>();
  private readonly fd: number;
  private readonly tmp: string;
  private failed = false;
  readonly id = `${Date.now().toString(36)}-${tmpSuffix()}`;

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    this.tmp = `${dir}/tmp-${this.id}.pack`;
    this.fd = openSync(this.tmp, "w", 0o444);
  }

  append(c: Uint8Array): void {
    if (this.failed) return;
    try {
      let off = 0;
      while (off < c.byteLength) off += nodefs.writeSync(this.fd, c, off, c.byteLength - off);
      this.offset += c.byteLength;
    } catch {
      // (e.g. ENOSPC) the blobs not stored here are read back by the capture instead
      this.failed = true;
    }
  }

  add(oid: string, offset: number, size: number): void {
    if (!this.failed && !this.entries.has(oid)) this.entries.set(oid, [offset, size]);
  }

  /**
   * Close and publish: the pack under its final name first, then its index (the index's
   * presence is what makes the pack usable), both before the baseline's ref names any of its
   * blobs. Returns the pack's id, or undefined when it holds nothing (then it is removed).
   */
  finish(): string | undefined {
    closeSync(this.fd);
    if (this.failed || this.entries.size === 0) {
      this.drop();
      if (this.failed) for (const oid of this.entries.keys()) this.entries.delete(oid);
      return undefined;
    }
    const lines = [IDX_MAGIC];
    for (const [oid, [off, size]] of this.entries) lines.push(`${oid} ${off} ${size}`);
    renameSync(this.tmp, `${this.dir}/${this.id}.pack`);
    const idxTmp = `${this.dir}/tmp-${this.id}.idx`;
    writeFileSync(idxTmp, `${lines.join("\n")}\n`, { mode: 0o444 });
    renameSync(idxTmp, `${this.dir}/${this.id}.idx`);
    return this.id;
  }

  /** Give up: nothing of this pack stays. */
  abort(): void {
    try {
      closeSync(this.fd);
    } catch {}
    this.drop();
  }

  private drop(): void {
    try {
      unlinkSync(this.tmp);
    } catch {}
  }
}

type PackIndex = Map<string, { pack: string; offset: number; size: number }>;
const packIndexMemo = new Map<string, { key: string; index: PackIndex }>();

/** Every published seed pack's entries (memoised on the set of index files). */
function seedPackIndex(gitdir: string): PackIndex {
  const dir = `${gitdir}/${SEED_PACK_DIR}`;
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => n.endsWith(".idx") && !n.startsWith("tmp-"))
      .sort();
  } catch {
    names = [];
  }
  const key = names.join("/");
  const memo = packIndexMemo.get(gitdir);
  if (memo && memo.key === key) return memo.index;
  const index: PackIndex = new Map();
  for (const name of names) {
    const pack = `${dir}/${name.slice(0, -4)}.pack`;
    const lines = nodefs.readFileSync(`${dir}/${name}`, "utf8").split("\n");
    if (lines[0] !== IDX_MAGIC) continue;
    for (const line of lines.slice(1)) {
      const [oid, off, size] = line.split(" ");
      if (oid && off && size) index.set(oid, { pack, offset: Number(off), size: Number(size) });
    }
  }
  packIndexMemo.set(gitdir, { key, index });
  return index;
}

/** A blob from a seed pack, checked against its oid; undefined when no pack has it. */
function readSeedPackBlob(gitdir: string, oid: string): Uint8Array | undefined {
  const at = seedPackIndex(gitdir).get(oid);
  if (!at) return undefined;
  const buf = new Uint8Array(at.size);
  const fd = openSync(at.pack, "r");
  try {
    let got = 0;
    while (got < at.size) {
      const n = readSync(fd, buf, got, at.size - got, at.offset + got);
      if (n === 0) break;
      got += n;
    }
    if (got !== at.size || blobOid(buf) !== oid) {
      throw new PyroError("IO_ERROR", `baseline blob ${oid} is damaged in its seed pack`);
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Remove every seed pack (and leftover temp file) except `keep`'s. */
function dropSeedPacks(gitdir: string, keep: string | undefined): void {
  const dir = `${gitdir}/${SEED_PACK_DIR}`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  // indexes first: a pack without its index is never read
  names.sort((a, b) => Number(b.endsWith(".idx")) - Number(a.endsWith(".idx")));
  for (const name of names) {
    if (keep && (name === `${keep}.idx` || name === `${keep}.pack`)) continue;
    try {
      unlinkSync(`${dir}/${name}`);
    } catch {}
  }
  packIndexMemo.delete(gitdir);
}

async function initGitdir(stateReal: string): Promise<string> {
  const gitdir = `${stateReal}/${BASELINE_GITDIR}`;
  await git.init({ fs: nodefs, gitdir, bare: true, defaultBranch: "baseline" });
  mkdirSync(`${gitdir}/objects`, { recursive: true });
  return gitdir;
}

async function capture(
  rootReal: string,
  stateReal: string,
  known: Map<string, Known> | null,
  packId?: string,
): Promise<{ result: CaptureResult; filesRead: number }> {
  const gitdir = `${stateReal}/${BASELINE_GITDIR}`;
  const refMs = Date.now();
  const entries: IndexEntry[] = [];
  let sinceYield = 0;
  let filesRead = 0;
  await walkTree(rootReal, skipListFor(rootReal, stateReal), async (path, abs, st, mode) => {
    const shown = `/workspace/${path}`;
    let oid: string;
    const k = mode === MODE_LINK ? undefined : known?.get(path);
    try {
      if (k && k.ino === st.ino && k.size === st.size && k.mtimeMs === st.mtimeMs) oid = k.oid;
      else if (mode === MODE_LINK) oid = writeBlobBytes(gitdir, readLinkBytes(abs, shown));
      else if (st.size > STREAM_THRESHOLD) {
        filesRead++;
        oid = await writeBlobStreaming(gitdir, abs, shown);
      } else {
        filesRead++;
        oid = writeBlobBytes(gitdir, readRegularFile(abs, shown));
      }
    } catch (err) {
      if (err instanceof PyroError && err.code === "FILE_NOT_FOUND") return; // vanished meanwhile
      throw err;
    }
    entries.push({ path, mode, oid, ...sigOf(st) });
    if (++sinceYield >= 256) {
      sinceYield = 0;
      await yieldNow();
    }
  });
  entries.sort((a, b) => comparePaths(a.path, b.path));

  const tree = await writeTrees(gitdir, entries);
  const when = {
    name: "pyro",
    email: "pyro@localhost",
    timestamp: Math.floor(refMs / 1000),
    timezoneOffset: 0,
  };
  const commit = await git.writeCommit({
    fs: nodefs,
    gitdir,
    commit: { message: "baseline\n", tree, parent: [], author: when, committer: when },
  });
  await git.writeRef({ fs: nodefs, gitdir, ref: BASELINE_REF, value: commit, force: true });
  // the previous baseline's seed pack (or, after a plain capture, every one) is unreferenced now
  dropSeedPacks(gitdir, packId);
  writeIndexFileMemo(`${gitdir}/index`, entries, refMs);
  forgetIndexMemo(`${stateReal}/${DIFF_CACHE_FILE}`);
  await rm(`${stateReal}/${DIFF_CACHE_FILE}`, { force: true });
  return { result: { files: entries.length, tree, commit }, filesRead };
}

/** Write the trees for sorted entries bottom-up; returns the root tree's oid. */
async function writeTrees(gitdir: string, entries: IndexEntry[]): Promise<string> {
  type TreeEntry = { mode: string; path: string; oid: string; type: "blob" | "tree" };
  const dirs = new Map<string, TreeEntry[]>([["", []]]);
  const ensure = (dir: string): TreeEntry[] => {
    let list = dirs.get(dir);
    if (!list) {
      list = [];
      dirs.set(dir, list);
      const cut = dir.lastIndexOf("/");
      ensure(cut < 0 ? "" : dir.slice(0, cut));
    }
    return list;
  };
  for (const e of entries) {
    const cut = e.path.lastIndexOf("/");
    ensure(cut < 0 ? "" : e.path.slice(0, cut)).push({
      mode: modeString(e.mode),
      path: cut < 0 ? e.path : e.path.slice(cut + 1),
      oid: e.oid,
      type: "blob",
    });
  }
  const depth = (d: string) => (d === "" ? 0 : d.split("/").length);
  const order = [...dirs.keys()].sort((a, b) => depth(b) - depth(a));
  let rootOid = "";
  for (const dir of order) {
    const oid = await git.writeTree({ fs: nodefs, gitdir, tree: dirs.get(dir)! });
    if (dir === "") {
      rootOid = oid;
      continue;
    }
    const cut = dir.lastIndexOf("/");
    dirs.get(cut < 0 ? "" : dir.slice(0, cut))!.push({
      mode: "040000",
      path: cut < 0 ? dir : dir.slice(cut + 1),
      oid,
      type: "tree",
    });
  }
  return rootOid;
}
