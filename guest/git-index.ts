/**
 * git's index file (DIRC version 2, the format git itself reads) and the stat signatures
 * its entries keep: the baseline's record of the workspace and diff.ts's stat cache both
 * use it. Entries are sorted by comparePaths (git's byte order); files are written
 * atomically with the scan's start time as their mtime (git's reference time for "racily
 * clean" entries, see baseline.ts).
 */

import type { Stats } from "node:fs";
import * as nodefs from "node:fs";
import { readFile } from "node:fs/promises";
import { fsError } from "../src/protocol/archive/index.ts";
import { PyroError } from "../src/protocol/errors.ts";

const { renameSync, statSync, unlinkSync, utimesSync, writeFileSync } = nodefs;

/** How recent (vs. the scan that recorded it) an entry's mtime/ctime may be and still be trusted. */
export const RACY_MARGIN_MS = 1000;

export const MODE_FILE = 0o100644;
export const MODE_EXEC = 0o100755;
export const MODE_LINK = 0o120000;
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

/** Byte order of UTF-8 paths (git's index and diff order). */
export function comparePaths(a: string, b: string): number {
  // UTF-16 order equals UTF-8 byte order except around surrogates; fall back only then.
  if (/[\ud800-\uffff]/.test(a) || /[\ud800-\uffff]/.test(b))
    return Buffer.compare(enc.encode(a), enc.encode(b));
  return a < b ? -1 : a > b ? 1 : 0;
}

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
