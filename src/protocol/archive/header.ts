/**
 * The tar header block (POSIX ustar, plus what GNU tar writes by default) and PAX records.
 * Pure byte functions: the streaming reader and writer in tar.ts are built on these.
 * Every malformed field is a PyroError INVALID_INPUT, never a thrown TypeError or NaN.
 */
import { PyroError } from "../errors.ts";

export const BLOCK = 512;
/** PAX/GNU long-name bodies are held in memory, so they are capped (PATH_MAX is 4096). */
export const MAX_META_BYTES = 1024 * 1024;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8");

/** Header field offsets and widths (ustar). */
const F = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

export function invalid(message: string): PyroError {
  return new PyroError("INVALID_INPUT", `invalid tar archive: ${message}`);
}

function field(block: Uint8Array, f: readonly [number, number]): Uint8Array {
  return block.subarray(f[0], f[0] + f[1]);
}

function cstring(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return dec.decode(nul === -1 ? bytes : bytes.subarray(0, nul));
}

/** Octal (NUL/space padded) or GNU base-256 (high bit set) numeric field. */
export function parseNumeric(bytes: Uint8Array, name: string): number {
  const first = bytes[0] ?? 0;
  if (first & 0x80) {
    // base-256: big-endian two's complement; negative values are never valid for us
    if (first === 0xff) throw invalid(`negative ${name} field`);
    let v = first & 0x7f;
    for (let i = 1; i < bytes.length; i++) {
      v = v * 256 + bytes[i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw invalid(`${name} field out of range`);
    }
    return v;
  }
  let i = 0;
  while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) throw invalid(`bad octal digit in ${name} field`);
    v = v * 8 + (c - 0x30);
    digits++;
  }
  // only NUL/space may follow the digits
  for (; i < bytes.length; i++) {
    if (bytes[i] !== 0 && bytes[i] !== 0x20) throw invalid(`bad octal in ${name} field`);
  }
  if (v > Number.MAX_SAFE_INTEGER) throw invalid(`${name} field out of range`);
  return digits === 0 ? 0 : v;
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** Sum with the checksum field read as spaces; historic writers used signed bytes. */
function checksums(block: Uint8Array): [number, number] {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return [unsigned, signed];
}

export interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  /** GNU old-sparse ('S') headers may be followed by extension blocks. */
  gnuSparseExtended: boolean;
}

export function decodeHeader(block: Uint8Array): RawHeader {
  const stored = parseNumeric(field(block, F.chksum), "checksum");
  const [unsigned, signed] = checksums(block);
  if (stored !== unsigned && stored !== signed) throw invalid("header checksum mismatch");
  const magic = cstring(field(block, F.magic));
  const version = dec.decode(field(block, F.version));
  // Only POSIX ustar has a prefix field; GNU's "ustar  " puts atime/ctime there.
  const posix = magic === "ustar" && version === "00";
  let name = cstring(field(block, F.name));
  if (posix) {
    const prefix = cstring(field(block, F.prefix));
    if (prefix) name = `${prefix}/${name}`;
  }
  const tf = block[156]!;
  return {
    name,
    mode: parseNumeric(field(block, F.mode), "mode") & 0o7777,
    uid: parseNumeric(field(block, F.uid), "uid"),
    gid: parseNumeric(field(block, F.gid), "gid"),
    size: parseNumeric(field(block, F.size), "size"),
    mtime: parseNumeric(field(block, F.mtime), "mtime"),
    typeflag: tf === 0 ? "0" : String.fromCharCode(tf),
    linkname: cstring(field(block, F.linkname)),
    uname: cstring(field(block, F.uname)),
    gname: cstring(field(block, F.gname)),
    gnuSparseExtended: tf === 0x53 && block[482] !== 0,
  };
}

/** Parse "len key=value\n" records; len counts the whole record in bytes. */
export function parsePax(body: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0) break; // some writers NUL-pad the body
    const space = body.indexOf(0x20, pos);
    if (space === -1 || space - pos > 20) throw invalid("bad PAX record length");
    const lenText = dec.decode(body.subarray(pos, space));
    if (!/^[0-9]+$/.test(lenText)) throw invalid("bad PAX record length");
    const len = Number(lenText);
    const end = pos + len;
    if (len <= space - pos + 1 || end > body.length || body[end - 1] !== 0x0a) {
      throw invalid("bad PAX record");
    }
    const record = body.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw invalid("bad PAX record");
    out.set(dec.decode(record.subarray(0, eq)), dec.decode(record.subarray(eq + 1)));
    pos = end;
  }
  return out;
}

export function paxInteger(value: string, key: string): number {
  if (!/^[0-9]{1,16}$/.test(value)) throw invalid(`bad PAX ${key}`);
  const n = Number(value);
  if (n > Number.MAX_SAFE_INTEGER) throw invalid(`PAX ${key} out of range`);
  return n;
}

export function paxTime(value: string, key: string): number {
  if (!/^-?[0-9]{1,16}(\.[0-9]{0,12})?$/.test(value)) throw invalid(`bad PAX ${key}`);
  return Number(value);
}

// ---------------------------------------------------------------- writing

export interface HeaderFields {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  /** only for POSIX ustar long-name splitting */
  prefix?: string;
}

function putString(block: Uint8Array, f: readonly [number, number], s: string): void {
  const bytes = enc.encode(s);
  block.set(bytes.subarray(0, f[1]), f[0]);
}

/** Octal digits + NUL; callers guarantee the value fits (else they use PAX). */
function putOctal(block: Uint8Array, f: readonly [number, number], v: number): void {
  putString(
    block,
    f,
    `${Math.trunc(v)
      .toString(8)
      .padStart(f[1] - 1, "0")}\0`,
  );
}

/** Largest value an octal field of this width holds (width-1 digits + NUL). */
export function octalMax(width: number): number {
  return 8 ** (width - 1) - 1;
}
export const SIZE_MAX_OCTAL = octalMax(12);
export const ID_MAX_OCTAL = octalMax(8);

export function encodeHeaderBlock(h: HeaderFields): Uint8Array {
  const block = new Uint8Array(BLOCK);
  putString(block, F.name, h.name);
  putOctal(block, F.mode, h.mode & 0o7777);
  putOctal(block, F.uid, h.uid);
  putOctal(block, F.gid, h.gid);
  putOctal(block, F.size, h.size);
  putOctal(block, F.mtime, h.mtime);
  block[156] = h.typeflag.charCodeAt(0);
  putString(block, F.linkname, h.linkname);
  putString(block, F.magic, "ustar\0");
  putString(block, F.version, "00");
  putString(block, F.uname, h.uname);
  putString(block, F.gname, h.gname);
  if (h.prefix) putString(block, F.prefix, h.prefix);
  const [sum] = checksums(block);
  putString(block, F.chksum, `${sum.toString(8).padStart(6, "0")}\0 `);
  return block;
}

/** One PAX record; the length prefix counts its own digits, hence the fixpoint loop. */
export function paxRecord(key: string, value: string): Uint8Array {
  const payload = enc.encode(` ${key}=${value}\n`);
  let len = payload.length + 1;
  while (String(len).length + payload.length !== len) len = String(len).length + payload.length;
  const out = new Uint8Array(len);
  out.set(enc.encode(String(len)), 0);
  out.set(payload, len - payload.length);
  return out;
}

export function byteLength(s: string): number {
  return enc.encode(s).length;
}

export function isAscii(s: string): boolean {
  return /^[\x01-\x7f]*$/.test(s);
}

/** Split a long ASCII path into ustar prefix/name, or undefined if it cannot be. */
export function splitUstarPath(path: string): { prefix: string; name: string } | undefined {
  if (!isAscii(path) || path.length > 256) return undefined;
  for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (prefix.length <= 155 && name.length > 0 && name.length <= 100) return { prefix, name };
  }
  return undefined;
}
