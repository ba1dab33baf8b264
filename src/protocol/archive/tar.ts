/**
 * Streaming tar codec shared by host and guest (the byte format of file transfers is part
 * of the wire protocol). Pure: no fs. The reader takes chunks with arbitrary boundaries and
 * yields entries whose bodies stream (a file is never buffered whole); the writer emits
 * POSIX ustar with PAX extended headers where ustar cannot say it (long or non-ASCII
 * names/links, sizes >= 8 GiB, fractional or out-of-range mtimes, large ids).
 *
 * Reading understands ustar, GNU (`././@LongLink` 'L'/'K', base-256 numbers, old sparse
 * headers, which surface as "other") and PAX ('x' per entry; 'g' global headers are
 * validated and ignored, e.g. git-archive's commit comment). Input must end with the
 * end-of-archive zero block: a stream that stops at a block boundary without it is
 * reported as truncated rather than taken as complete.
 */
import { PyroError } from "../errors.ts";
import { ByteReader, type ByteSource } from "./bytes.ts";
import {
  BLOCK,
  byteLength,
  decodeHeader,
  encodeHeaderBlock,
  ID_MAX_OCTAL,
  invalid,
  isAscii,
  isZeroBlock,
  MAX_META_BYTES,
  octalMax,
  parsePax,
  paxInteger,
  paxRecord,
  paxTime,
  SIZE_MAX_OCTAL,
  splitUstarPath,
} from "./header.ts";

export type { ByteSource } from "./bytes.ts";

export type TarEntryType = "file" | "directory" | "symlink" | "hardlink" | "other";

export interface TarEntryInfo {
  /** as stored (after PAX/GNU overrides); not normalised, may be hostile */
  path: string;
  type: TarEntryType;
  /** permission bits incl. setuid/setgid/sticky (07777) */
  mode: number;
  size: number;
  /** seconds since the epoch, may be fractional (PAX) */
  mtime: number;
  linkTarget: string | undefined;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** raw typeflag character, to name what an "other" entry is */
  typeflag: string;
}

export interface TarEntry extends TarEntryInfo {
  /**
   * The body, once. Read it before asking for the next entry: the reader skips whatever
   * is left unread when it moves on, and a stale body then throws.
   */
  body: AsyncIterable<Uint8Array>;
}

export interface ReadTarOptions {
  /** entries declaring a larger size are rejected before any body byte is read */
  maxEntrySize?: number;
}

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "7": "file", // contiguous file: a plain file everywhere that matters
  "1": "hardlink",
  "2": "symlink",
  "5": "directory",
};

const pad = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;
const MAX_META_CHAIN = 16;
const SMALL_CHUNK = 4096;
const COALESCE = 64 * 1024;
const dec = new TextDecoder("utf-8");

function cstring(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return dec.decode(nul === -1 ? bytes : bytes.subarray(0, nul));
}

/** Parse a tar stream. Malformed input throws PyroError INVALID_INPUT; it never hangs. */
export async function* readTar(source: ByteSource, opts: ReadTarOptions = {}): AsyncGenerator<TarEntry> {
  const maxSize = opts.maxEntrySize ?? Number.MAX_SAFE_INTEGER;
  const r = new ByteReader(source);
  let seen = false;
  let pax = new Map<string, string>();
  let longName: string | undefined;
  let longLink: string | undefined;
  let meta = 0;
  try {
    for (;;) {
      const { bytes: block, got } = await r.readExact(BLOCK);
      if (!block) {
        if (got > 0) throw invalid(`truncated header at byte ${r.offset - got}`);
        throw invalid(seen ? "unexpected end of input (no end-of-archive marker)" : "empty input");
      }
      if (isZeroBlock(block)) {
        if (meta > 0) throw invalid("extended header not followed by an entry");
        // The second zero block is optional in practice; trailing record padding is not read.
        await r.readExact(BLOCK);
        return;
      }
      const h = decodeHeader(block);
      seen = true;

      if (h.typeflag === "x" || h.typeflag === "g" || h.typeflag === "L" || h.typeflag === "K") {
        if (h.size > MAX_META_BYTES) throw invalid(`extended header of ${h.size} bytes is too large`);
        if (++meta > MAX_META_CHAIN) throw invalid("too many extended headers in a row");
        const body = h.size === 0 ? new Uint8Array(0) : (await r.readExact(h.size)).bytes;
        if (!body || !(await r.skip(pad(h.size)))) throw invalid("truncated extended header");
        if (h.typeflag === "x") for (const [k, v] of parsePax(body)) pax.set(k, v);
        else if (h.typeflag === "g") parsePax(body);
        else if (h.typeflag === "L") longName = cstring(body);
        else longLink = cstring(body);
        continue;
      }

      const info = applyOverrides(h, pax, longName, longLink);
      pax = new Map();
      longName = longLink = undefined;
      meta = 0;
      if (info.size > maxSize)
        throw invalid(`entry "${info.path}" declares ${info.size} bytes (limit ${maxSize})`);
      if (h.gnuSparseExtended) await skipSparseExtensions(r);

      let remaining = info.size;
      let current = true;
      const take = async (n: number) => {
        if (!current) throw new PyroError("INTERNAL", "tar entry body read after the reader moved on");
        const chunk = await r.readUpTo(n);
        if (!chunk) throw invalid(`truncated body of "${info.path}"`);
        remaining -= chunk.length;
        return chunk;
      };
      const body: AsyncIterable<Uint8Array> = {
        async *[Symbol.asyncIterator]() {
          while (remaining > 0) {
            const chunk = await take(remaining);
            if (chunk.length >= SMALL_CHUNK || remaining === 0) {
              yield chunk;
              continue;
            }
            // Tiny source chunks are joined (up to COALESCE bytes) so a consumer does
            // not pay one write per byte when the transport fragments.
            const buf = new Uint8Array(Math.min(COALESCE, chunk.length + remaining));
            buf.set(chunk, 0);
            let n = chunk.length;
            while (n < buf.length) {
              const more = await take(buf.length - n);
              buf.set(more, n);
              n += more.length;
            }
            yield buf;
          }
        },
      };
      yield { ...info, body };
      current = false;
      if (!(await r.skip(remaining + pad(info.size)))) throw invalid(`truncated body of "${info.path}"`);
    }
  } finally {
    await r.close();
  }
}

function applyOverrides(
  h: ReturnType<typeof decodeHeader>,
  pax: Map<string, string>,
  longName: string | undefined,
  longLink: string | undefined,
): TarEntryInfo {
  const path = pax.get("path") ?? longName ?? h.name;
  const link = pax.get("linkpath") ?? longLink ?? h.linkname;
  if (path === "") throw invalid("entry with an empty name");
  if (path.includes("\0") || link.includes("\0")) throw invalid("NUL byte in entry name");
  let type = TYPES[h.typeflag] ?? "other";
  // pre-POSIX archives mark directories only by the trailing slash
  if (type === "file" && h.typeflag === "0" && path.endsWith("/")) type = "directory";
  // GNU sparse files (PAX flavour) store a sparse map, not the file bytes: refuse to guess
  if ([...pax.keys()].some((k) => k.startsWith("GNU.sparse."))) type = "other";
  const num = (key: string, fallback: number) => {
    const v = pax.get(key);
    return v === undefined ? fallback : paxInteger(v, key);
  };
  const mtime = pax.get("mtime");
  return {
    path,
    type,
    mode: h.mode,
    size: num("size", h.size),
    mtime: mtime === undefined ? h.mtime : paxTime(mtime, "mtime"),
    linkTarget: type === "symlink" || type === "hardlink" ? link : link || undefined,
    uid: num("uid", h.uid),
    gid: num("gid", h.gid),
    uname: pax.get("uname") ?? h.uname,
    gname: pax.get("gname") ?? h.gname,
    typeflag: h.typeflag,
  };
}

/** Old GNU sparse ('S'): extension blocks follow the header while byte 504 is set. */
async function skipSparseExtensions(r: ByteReader): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    const { bytes } = await r.readExact(BLOCK);
    if (!bytes) throw invalid("truncated sparse header");
    if (bytes[504] === 0) return;
  }
  throw invalid("too many sparse header blocks");
}

// ------------------------------------------------------------------------ writer

export interface TarHeaderInput {
  /** archive path, "/"-separated; directories get a trailing "/" if missing */
  path: string;
  type: "file" | "directory" | "symlink" | "hardlink";
  mode?: number;
  /** body length; only files carry a body */
  size?: number;
  /** seconds since the epoch; fractional or out-of-range values go into PAX */
  mtime?: number;
  linkTarget?: string;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
}

const TYPEFLAG = { file: "0", hardlink: "1", symlink: "2", directory: "5" } as const;

/** Printable ASCII stand-in for a ustar field when the real value travels in PAX. */
function fallback(s: string, width: number): string {
  return s.replace(/[^\x20-\x7e]/g, "_").slice(0, width);
}

function formatTime(t: number): string {
  return Number.isInteger(t) ? String(t) : t.toFixed(9).replace(/0+$/, "");
}

/** Header block(s) for one entry: an optional PAX header + body, then the ustar header. */
export function encodeTarHeader(h: TarHeaderInput): Uint8Array {
  if (!h.path || h.path.includes("\0"))
    throw new PyroError("INVALID_INPUT", "tar entry needs a name without NUL");
  const size = h.type === "file" ? (h.size ?? 0) : 0;
  if (!Number.isSafeInteger(size) || size < 0)
    throw new PyroError("INVALID_INPUT", `bad tar entry size ${size}`);
  const link = h.linkTarget ?? "";
  if ((h.type === "symlink" || h.type === "hardlink") && (!link || link.includes("\0"))) {
    throw new PyroError("INVALID_INPUT", `tar ${h.type} "${h.path}" needs a target without NUL`);
  }
  const name = h.type === "directory" && !h.path.endsWith("/") ? `${h.path}/` : h.path;
  const mtime = h.mtime ?? 0;
  const uid = h.uid ?? 0;
  const gid = h.gid ?? 0;
  const uname = h.uname ?? "";
  const gname = h.gname ?? "";
  const records: Uint8Array[] = [];

  let ustarName = name;
  let prefix = "";
  if (!isAscii(name) || name.length > 100) {
    const split = splitUstarPath(name);
    if (split) ({ prefix, name: ustarName } = split);
    else {
      records.push(paxRecord("path", name));
      ustarName = fallback(name, 100);
    }
  }
  let ustarLink = link;
  if (!isAscii(link) || link.length > 100) {
    records.push(paxRecord("linkpath", link));
    ustarLink = fallback(link, 100);
  }
  if (size > SIZE_MAX_OCTAL) records.push(paxRecord("size", String(size)));
  const mtimeFits = Number.isInteger(mtime) && mtime >= 0 && mtime <= octalMax(12);
  if (!mtimeFits) records.push(paxRecord("mtime", formatTime(mtime)));
  if (uid > ID_MAX_OCTAL) records.push(paxRecord("uid", String(uid)));
  if (gid > ID_MAX_OCTAL) records.push(paxRecord("gid", String(gid)));
  if (!isAscii(uname) || byteLength(uname) > 31) records.push(paxRecord("uname", uname));
  if (!isAscii(gname) || byteLength(gname) > 31) records.push(paxRecord("gname", gname));

  const main = encodeHeaderBlock({
    name: ustarName,
    prefix,
    mode: h.mode ?? (h.type === "directory" ? 0o755 : 0o644),
    uid: uid > ID_MAX_OCTAL ? 0 : uid,
    gid: gid > ID_MAX_OCTAL ? 0 : gid,
    size: size > SIZE_MAX_OCTAL ? 0 : size,
    mtime: mtimeFits ? mtime : Math.min(Math.max(Math.floor(mtime), 0), octalMax(12)),
    typeflag: TYPEFLAG[h.type],
    linkname: ustarLink,
    uname: fallback(uname, 31),
    gname: fallback(gname, 31),
  });
  if (records.length === 0) return main;

  const paxLen = records.reduce((n, r) => n + r.length, 0);
  const out = new Uint8Array(BLOCK + paxLen + pad(paxLen) + BLOCK);
  const base = fallback(name.replace(/\/+$/, "").split("/").pop() || "entry", 90);
  out.set(
    encodeHeaderBlock({
      name: `PaxHeader/${base}`,
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: paxLen,
      mtime: mtimeFits ? mtime : 0,
      typeflag: "x",
      linkname: "",
      uname: "",
      gname: "",
    }),
    0,
  );
  let pos = BLOCK;
  for (const r of records) {
    out.set(r, pos);
    pos += r.length;
  }
  out.set(main, out.length - BLOCK);
  return out;
}

/** Zero bytes that round a body of `size` bytes up to a whole block. */
export function tarPadding(size: number): Uint8Array {
  return new Uint8Array(pad(size));
}

/** The end-of-archive marker: two zero blocks. */
export function tarEnd(): Uint8Array {
  return new Uint8Array(2 * BLOCK);
}

export interface TarWriteEntry {
  header: TarHeaderInput;
  /** file bytes; must add up to exactly header.size */
  body?: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/** Serialise entries lazily: one entry's chunks at a time, then the end marker. */
export async function* writeTar(
  entries: AsyncIterable<TarWriteEntry> | Iterable<TarWriteEntry>,
): AsyncGenerator<Uint8Array> {
  for await (const entry of entries) {
    yield encodeTarHeader(entry.header);
    const size = entry.header.type === "file" ? (entry.header.size ?? 0) : 0;
    let written = 0;
    if (entry.body) {
      for await (const chunk of entry.body) {
        written += chunk.length;
        if (written > size) break;
        if (chunk.length > 0) yield chunk;
      }
    }
    if (written !== size) {
      throw new PyroError(
        "INVALID_INPUT",
        `tar entry "${entry.header.path}" body is ${written > size ? "longer" : "shorter"} than its declared ${size} bytes`,
      );
    }
    const p = pad(size);
    if (p) yield new Uint8Array(p);
  }
  yield tarEnd();
}
