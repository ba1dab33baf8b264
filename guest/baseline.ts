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
 *   use it too: `git --git-dir=<state>/baseline.git --work-tree=/workspace status`.
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
import { readFile, rm } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createDeflate, deflateSync } from "node:zlib";
import git from "isomorphic-git";
import { fsError } from "../src/protocol/archive/index.ts";
import { PyroError } from "../src/protocol/errors.ts";
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
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} = nodefs;

export const BASELINE_GITDIR = "baseline.git";
/** diff.ts's own stat cache for paths that differ from the baseline (same file format). */
export const DIFF_CACHE_FILE = "diff-cache.idx";
export const BASELINE_REF = "refs/heads/baseline";
/** How recent (vs. the scan that recorded it) an entry's mtime/ctime may be and still be trusted. */
export const RACY_MARGIN_MS = 1000;
/** Files up to this size are read whole; larger ones are streamed. */
export const STREAM_THRESHOLD = 8 * 1024 * 1024;

export const MODE_FILE = 0o100644;
export const MODE_EXEC = 0o100755;
export const MODE_LINK = 0o120000;
export const MODE_TREE = 0o040000;
export const ZERO_OID = "0".repeat(40);

/** The stat data an index entry keeps (numbers truncated to 32 bits, as git stores them). */
export interface Sig {
  ctimeS: number;
  ctimeNs: number;
  mtimeS: number;
  mtimeNs: number;
  dev: number;
  ino: number;
  uid: number;
  gid: number;
  size: number;
}

export interface IndexEntry extends Sig {
  /** root-relative, "/"-separated */
  path: string;
  /** git mode: MODE_FILE, MODE_EXEC or MODE_LINK */
  mode: number;
  /** hex SHA-1 of the blob */
  oid: string;
}

export interface IndexFile {
  entries: IndexEntry[];
  /** Date.now() when the scan that recorded these entries started (the file's mtime) */
  refMs: number;
  /** path → position in entries, built on demand (kept with a memoized index) */
  positions?: Map<string, number>;
}

export function positionsOf(index: IndexFile): Map<string, number> {
  if (!index.positions) {
    const m = new Map<string, number>();
    for (let i = 0; i < index.entries.length; i++) m.set(index.entries[i]!.path, i);
    index.positions = m;
  }
  return index.positions;
}

function splitMs(ms: number): [number, number] {
  const s = Math.floor(ms / 1000);
  const ns = Math.min(999_999_999, Math.max(0, Math.round((ms - s * 1000) * 1e6)));
  return [s >>> 0, ns >>> 0];
}

export function sigOf(st: Stats): Sig {
  const [ctimeS, ctimeNs] = splitMs(st.ctimeMs);
  const [mtimeS, mtimeNs] = splitMs(st.mtimeMs);
  return {
    ctimeS,
    ctimeNs,
    mtimeS,
    mtimeNs,
    dev: st.dev >>> 0,
    ino: st.ino >>> 0,
    uid: st.uid >>> 0,
    gid: st.gid >>> 0,
    size: st.size >>> 0,
  };
}

/** Same file, same content as far as stat can tell (dev is left out: overlayfs may renumber it). */
export function sameSig(a: Sig, b: Sig): boolean {
  return (
    a.mtimeS === b.mtimeS &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeS === b.ctimeS &&
    a.ctimeNs === b.ctimeNs &&
    a.ino === b.ino &&
    a.size === b.size
  );
}

/** sameSig(e, sigOf(st)) without building the object (the hot path of a diff). */
export function matchesStat(e: Sig, st: Stats): boolean {
  if (e.size !== st.size >>> 0 || e.ino !== st.ino >>> 0) return false;
  const [ms, mns] = splitMs(st.mtimeMs);
  if (e.mtimeS !== ms || e.mtimeNs !== mns) return false;
  const [cs, cns] = splitMs(st.ctimeMs);
  return e.ctimeS === cs && e.ctimeNs === cns;
}

/** Make an entry's stat data match nothing (git's "smudging" of racily clean entries). */
export function smudge(e: Sig): void {
  e.ctimeS = e.ctimeNs = e.mtimeS = e.mtimeNs = e.ino = e.size = 0;
}

export function isRacy(e: Sig, refMs: number, marginMs: number = RACY_MARGIN_MS): boolean {
  const limit = refMs - marginMs;
  return e.mtimeS * 1000 + e.mtimeNs / 1e6 >= limit || e.ctimeS * 1000 + e.ctimeNs / 1e6 >= limit;
}

/** git's mode for what lstat saw, or null for things git does not track. */
export function gitModeOf(st: Stats): number | null {
  if (st.isSymbolicLink()) return MODE_LINK;
  if (st.isFile()) return st.mode & 0o100 ? MODE_EXEC : MODE_FILE;
  return null;
}

export function modeString(mode: number): string {
  return mode.toString(8).padStart(6, "0");
}

const enc = new TextEncoder();

/** The blob id git would give these bytes. */
export function blobOid(data: Uint8Array): string {
  const h = new Bun.CryptoHasher("sha1");
  h.update(`blob ${data.byteLength}\0`);
  h.update(data);
  return h.digest("hex");
}

/** Byte order of UTF-8 paths (git's index and diff order). */
export function comparePaths(a: string, b: string): number {
  // UTF-16 order equals UTF-8 byte order except around surrogates; fall back only then.
  if (/[\ud800-\uffff]/.test(a) || /[\ud800-\uffff]/.test(b))
    return Buffer.compare(enc.encode(a), enc.encode(b));
  return a < b ? -1 : a > b ? 1 : 0;
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
// The index file (DIRC version 2), shared by the baseline and diff.ts's cache

const SIGNATURE = 0x44495243; // "DIRC"

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
function hexOf(bytes: Uint8Array, off: number): string {
  let s = "";
  for (let i = off; i < off + 20; i++) s += HEX[bytes[i]!];
  return s;
}
function nameOf(bytes: Uint8Array, start: number, end: number): string {
  for (let i = start; i < end; i++) if (bytes[i]! >= 0x80) return dec.decode(bytes.subarray(start, end));
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1", start, end);
}

export function encodeIndex(entries: IndexEntry[]): Uint8Array {
  const names = entries.map((e) => enc.encode(e.path));
  let size = 12;
  for (const n of names) size += Math.floor((62 + n.length + 8) / 8) * 8;
  size += 20;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, SIGNATURE);
  dv.setUint32(4, 2);
  dv.setUint32(8, entries.length);
  let off = 12;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const name = names[i]!;
    dv.setUint32(off, e.ctimeS);
    dv.setUint32(off + 4, e.ctimeNs);
    dv.setUint32(off + 8, e.mtimeS);
    dv.setUint32(off + 12, e.mtimeNs);
    dv.setUint32(off + 16, e.dev);
    dv.setUint32(off + 20, e.ino);
    dv.setUint32(off + 24, e.mode);
    dv.setUint32(off + 28, e.uid);
    dv.setUint32(off + 32, e.gid);
    dv.setUint32(off + 36, e.size);
    out.set(Buffer.from(e.oid, "hex"), off + 40);
    dv.setUint16(off + 60, Math.min(name.length, 0xfff));
    out.set(name, off + 62);
    off += Math.floor((62 + name.length + 8) / 8) * 8; // at least one NUL, 8-byte aligned
  }
  const h = new Bun.CryptoHasher("sha1");
  h.update(out.subarray(0, off));
  out.set(new Uint8Array(h.digest() as unknown as ArrayBuffer), off);
  return out;
}

const dec = new TextDecoder();

export function decodeIndex(bytes: Uint8Array, what = "index"): IndexFile {
  const bad = (why: string) => new PyroError("IO_ERROR", `corrupt ${what}: ${why}`);
  if (bytes.length < 32) throw bad("too short");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0) !== SIGNATURE) throw bad("bad signature");
  if (dv.getUint32(4) !== 2) throw bad(`unsupported version ${dv.getUint32(4)}`);
  const h = new Bun.CryptoHasher("sha1");
  h.update(bytes.subarray(0, bytes.length - 20));
  if (
    Buffer.compare(
      new Uint8Array(h.digest() as unknown as ArrayBuffer),
      bytes.subarray(bytes.length - 20),
    ) !== 0
  )
    throw bad("checksum mismatch");
  const count = dv.getUint32(8);
  const end = bytes.length - 20;
  const entries: IndexEntry[] = new Array(count);
  let off = 12;
  for (let i = 0; i < count; i++) {
    if (off + 62 > end) throw bad("truncated entry");
    const flags = dv.getUint16(off + 60);
    if (flags & 0x4000) throw bad("extended entries are not supported");
    let nameLen = flags & 0xfff;
    if (nameLen === 0xfff) {
      nameLen = bytes.indexOf(0, off + 62) - (off + 62);
      if (nameLen < 0) throw bad("unterminated name");
    }
    entries[i] = {
      ctimeS: dv.getUint32(off),
      ctimeNs: dv.getUint32(off + 4),
      mtimeS: dv.getUint32(off + 8),
      mtimeNs: dv.getUint32(off + 12),
      dev: dv.getUint32(off + 16),
      ino: dv.getUint32(off + 20),
      mode: dv.getUint32(off + 24),
      uid: dv.getUint32(off + 28),
      gid: dv.getUint32(off + 32),
      size: dv.getUint32(off + 36),
      oid: hexOf(bytes, off + 40),
      path: nameOf(bytes, off + 62, off + 62 + nameLen),
    };
    off += Math.floor((62 + nameLen + 8) / 8) * 8;
  }
  // extensions (TREE, ...) are not used here
  return { entries, refMs: 0 };
}

/**
 * The index at `file`, or undefined when there is none. Its reference time (see the top of
 * this file) is the file's mtime, which writeIndexFile sets to the scan's start: the same
 * rule git applies to its index, so system git reading it agrees with us.
 */
export async function readIndexFile(file: string, what = "index"): Promise<IndexFile | undefined> {
  let bytes: Uint8Array;
  let refMs: number;
  try {
    refMs = statSync(file).mtimeMs;
    bytes = await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fsError(err, what);
  }
  return { entries: decodeIndex(bytes, what).entries, refMs };
}

/**
 * readIndexFile, but parsed entries are kept in memory between calls while the file is the
 * one we last read or wrote (same inode, size, mtime and ctime). Callers may change the
 * entries they get only if they then write them with writeIndexFileMemo.
 */
const memo = new Map<string, { id: string; index: IndexFile }>();

function fileId(file: string): string | undefined {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  } catch {
    return undefined;
  }
}

export async function readIndexFileMemo(file: string, what = "index"): Promise<IndexFile | undefined> {
  const id = fileId(file);
  const hit = memo.get(file);
  if (id && hit && hit.id === id) return hit.index;
  memo.delete(file);
  const index = await readIndexFile(file, what);
  if (index && id && fileId(file) === id) memo.set(file, { id, index });
  return index;
}

export function writeIndexFileMemo(file: string, entries: IndexEntry[], refMs: number): void {
  memo.delete(file);
  writeIndexFile(file, entries, refMs);
  const id = fileId(file);
  if (id) memo.set(file, { id, index: { entries, refMs } });
}

export function forgetIndexMemo(file: string): void {
  memo.delete(file);
}

/**
 * Write atomically (temp + rename); entries must already be sorted (comparePaths). The
 * temp file's mtime is set to refMs before the rename, so a crash can never pair these
 * entries with a later reference time.
 */
export function writeIndexFile(file: string, entries: IndexEntry[], refMs: number): void {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    writeFileSync(tmp, encodeIndex(entries), { mode: 0o600 });
    utimesSync(tmp, refMs / 1000, refMs / 1000);
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw fsError(err, "baseline state");
  }
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
    serialized(`state:${stateReal}`, () => capture(rootReal, stateReal)),
  );
}

async function capture(rootReal: string, stateReal: string): Promise<CaptureResult> {
  const gitdir = `${stateReal}/${BASELINE_GITDIR}`;
  await git.init({ fs: nodefs, gitdir, bare: true, defaultBranch: "baseline" });
  mkdirSync(`${gitdir}/objects`, { recursive: true });

  const refMs = Date.now();
  const entries: IndexEntry[] = [];
  let sinceYield = 0;
  await walkTree(rootReal, skipListFor(rootReal, stateReal), async (path, abs, st, mode) => {
    const shown = `/workspace/${path}`;
    let oid: string;
    try {
      if (mode === MODE_LINK) oid = writeBlobBytes(gitdir, readLinkBytes(abs, shown));
      else if (st.size > STREAM_THRESHOLD) oid = await writeBlobStreaming(gitdir, abs, shown);
      else oid = writeBlobBytes(gitdir, readRegularFile(abs, shown));
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
  return { files: entries.length, tree, commit };
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
