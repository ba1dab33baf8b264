/**
 * The diff baseline: an immutable snapshot of the workspace root, kept as a git repository
 * in `<stateDir>/baseline.git` (a bare gitdir whose work tree is the root; the state dir is
 * outside /workspace, so nothing of it is visible there). Captured at create and again
 * whenever the host asks (reset, later); a new capture replaces the previous one.
 *
 * What is stored:
 * - one blob per regular file (mode 100644, or 100755 when the owner may execute it) and per
 *   symlink (mode 120000, the blob is the link target); written as loose objects by us
 *   (zlib level 1 like git's default, temp file + rename so a crash never leaves a truncated
 *   object; files over 8 MiB are streamed, never held in memory);
 * - trees and one commit written with isomorphic-git, `refs/heads/baseline` (HEAD) → it;
 * - the git index (DIRC version 2, the format git itself reads) with the baseline's oids and
 *   each file's stat data at capture time. diff.ts uses it as a stat cache; system git can
 *   use it too: `git --git-dir=<state>/baseline.git --work-tree=/workspace status`. The
 *   index format and stat signatures are git-index.ts.
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
import { createDeflate, deflate, deflateSync } from "node:zlib";
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

/** writeBlobBytes, deflating on zlib's thread pool so the event loop stays free meanwhile. */
async function writeBlobBytesAsync(gitdir: string, data: Uint8Array): Promise<string> {
  const oid = blobOid(data);
  if (existsSync(objectPath(gitdir, oid))) return oid;
  const header = enc.encode(`blob ${data.byteLength}\0`);
  const raw = new Uint8Array(header.length + data.byteLength);
  raw.set(header);
  raw.set(data, header.length);
  const packed = await new Promise<Uint8Array>((res, rej) =>
    deflate(raw, { level: 1 }, (err, out) => (err ? rej(err) : res(out))),
  );
  const tmp = `${gitdir}/objects/tmp-${tmpSuffix()}`;
  writeFileSync(tmp, packed, { mode: 0o444 });
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
 * hands it, which stores each regular file's blob from the bytes as they stream past and
 * remembers the file's identity (inode, size, mtime right after it was written). The capture
 * that follows walks the root with lstat only and takes a remembered blob for every file whose
 * identity still matches, so no file is read back; anything else (a file that was there before,
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
      const result = await run(importObserver(gitdir, known));
      const { result: baseline, filesRead } = await capture(rootReal, stateReal, known);
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

/** Bytes hashed/deflated between two turns of the event loop (see importObserver). */
const YIELD_EVERY_BYTES = 256 * 1024;

function importObserver(gitdir: string, known: Map<string, Known>): UnpackObserver {
  // The extraction loop runs on already-buffered tar data as one chain of microtasks; the
  // blob work added here would keep the agent from reading its connection (pings included:
  // the supervisor's liveness deadline) for seconds under TCG. A macrotask turn every
  // YIELD_EVERY_BYTES lets I/O in.
  let sinceYield = 0;
  const paced = (sink: FileObserver): FileObserver => ({
    async chunk(c) {
      await sink.chunk(c);
      sinceYield += c.byteLength;
      if (sinceYield >= YIELD_EVERY_BYTES) {
        sinceYield = 0;
        await yieldNow();
      }
    },
    done: (st) => sink.done(st),
    abort: () => sink.abort(),
  });
  return {
    file(path, size): FileObserver | undefined {
      known.delete(path); // whatever was written here before is replaced
      if (untracked(path)) return undefined;
      return paced(
        size <= STREAM_THRESHOLD
          ? smallBlobSink(gitdir, size, (oid, st) => known.set(path, { oid, ...st }))
          : largeBlobSink(gitdir, size, (oid, st) => known.set(path, { oid, ...st })),
      );
    },
    hardlink(path, target) {
      const k = known.get(target);
      if (k && !untracked(path)) known.set(path, k);
      else known.delete(path);
    },
  };
}

type Identity = { ino: number; size: number; mtimeMs: number };

/** A file held whole (it is small), stored as one blob once written. */
function smallBlobSink(
  gitdir: string,
  size: number,
  stored: (oid: string, st: Identity) => void,
): FileObserver {
  const buf = new Uint8Array(size);
  let got = 0;
  return {
    chunk(c) {
      if (got + c.byteLength <= size) buf.set(c, got);
      got += c.byteLength;
    },
    async done(st) {
      if (got !== size || st.size !== size) return; // not what the header said: read it later
      // deflated off the event loop: the import's stream keeps being read and pings answered
      stored(await writeBlobBytesAsync(gitdir, buf), st);
    },
    abort() {},
  };
}

/** A large file's blob, hashed and deflated into a temp object as the bytes pass. */
function largeBlobSink(
  gitdir: string,
  size: number,
  stored: (oid: string, st: Identity) => void,
): FileObserver {
  const h = new Bun.CryptoHasher("sha1");
  const header = enc.encode(`blob ${size}\0`);
  h.update(header);
  const tmp = `${gitdir}/objects/tmp-${tmpSuffix()}`;
  const def = createDeflate({ level: 1 });
  const finished = pipeline(def, nodefs.createWriteStream(tmp, { mode: 0o444 }));
  finished.catch(() => {}); // awaited in done(); an abort's error is expected
  const drop = () => {
    try {
      unlinkSync(tmp);
    } catch {}
  };
  def.write(header);
  let got = 0;
  return {
    async chunk(c) {
      got += c.byteLength;
      h.update(c);
      // copied: the reader may reuse its buffer once this returns
      if (!def.write(Buffer.from(c))) {
        await Promise.race([new Promise((r) => def.once("drain", r)), finished]);
      }
    },
    async done(st) {
      def.end();
      await finished;
      if (got !== size || st.size !== size) return drop();
      const oid = h.digest("hex");
      placeObject(gitdir, oid, tmp);
      stored(oid, st);
    },
    abort() {
      def.destroy();
      drop();
    },
  };
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
