/**
 * Offline access to an ext4 image with e2fsprogs' `debugfs`: no mount, no loop device, no
 * kernel filesystem code on a disk a guest could have crafted. debugfs is a user-space
 * process of the caller's user; the image is opened read-only unless a caller explicitly
 * asks for a writable session (export scrubbing, on a private copy only).
 *
 * Robustness rules:
 * - argv arrays only, never a shell. Reads never put a file *name* into a debugfs request:
 *   directories and inodes are addressed as `<ino>` and names are matched here, byte for
 *   byte. Only the export scrub (on a copy) quotes names, with ss_parse's rules.
 * - All debugfs output is handled as bytes (latin1 strings, one char per byte); names and
 *   link targets are decoded as UTF-8 only for display.
 * - `ls -p` lines are `/ino/mode/uid/gid/name/size/` with the name raw (it may hold
 *   newlines but never a slash), so they are parsed sequentially with a sticky regex rather
 *   than split on newlines. Inode metadata comes from `inode_dump` (a hex dump of the raw
 *   on-disk inode), never from `stat`, whose output embeds link targets and xattr values.
 * - Batches go through `-f -` (one process, commands on stdin, each echoed as
 *   `debugfs: CMD`); the echoes are matched exactly, in order.
 * - Output size and run time are capped; anything unexpected is IO_ERROR, never a guess.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { PyroError } from "../../protocol/errors.ts";

/** Link-count and symlink-loop limits mirror the kernel's. */
export const MAX_SYMLINK_TARGET = 4096;
const BATCH_CHUNK = 2000;
const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_OUTPUT_CAP = 256 * 1024 * 1024;

// ---------------------------------------------------------------- tool lookup

const SBIN_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/** e2fsprogs live in sbin, which is often not on an unprivileged user's PATH. */
export function findTool(name: string): string {
  const path = [process.env.PATH ?? "", ...SBIN_DIRS].filter(Boolean).join(":");
  const found = Bun.which(name, { PATH: path });
  if (!found) {
    throw new PyroError("BACKEND_UNAVAILABLE", `${name} not found (install e2fsprogs)`, {
      details: { tool: name },
      hint: "apt-get install e2fsprogs",
    });
  }
  return found;
}

// ---------------------------------------------------------------- superblock

export interface Superblock {
  inodesCount: number;
  blockSize: number;
  inodeSize: number;
  /** EXT4_FEATURE_INCOMPAT_RECOVER: mounted now, or not cleanly unmounted */
  needsRecovery: boolean;
  /** EXT2_ERROR_FS in s_state */
  hasErrors: boolean;
  label: string;
  featureIncompat: number;
}

const EXT4_MAGIC = 0xef53;
const INCOMPAT_RECOVER = 0x4;

/** Read the primary superblock directly (binary, fixed layout: nothing to spoof). */
export function readSuperblock(image: string): Superblock {
  let fd: number;
  try {
    fd = openSync(image, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new PyroError("FILE_NOT_FOUND", `disk image not found: ${image}`, { details: { disk: image } });
    }
    throw new PyroError("IO_ERROR", `cannot open disk image ${image}: ${String(err)}`, {
      details: { disk: image },
      cause: err,
    });
  }
  const buf = Buffer.alloc(1024);
  try {
    const n = readSync(fd, buf, 0, 1024, 1024);
    if (n !== 1024) throw new Error("short read");
  } catch (err) {
    throw notExt4(image, String(err));
  } finally {
    closeSync(fd);
  }
  if (buf.readUInt16LE(56) !== EXT4_MAGIC) throw notExt4(image, "bad superblock magic");
  const rev = buf.readUInt32LE(76);
  const logBlock = buf.readUInt32LE(24);
  const inodeSize = rev === 0 ? 128 : buf.readUInt16LE(88);
  if (logBlock > 6 || inodeSize < 128 || inodeSize > 4096 || (inodeSize & (inodeSize - 1)) !== 0) {
    throw notExt4(image, "implausible superblock");
  }
  const incompat = buf.readUInt32LE(96);
  const label = buf.subarray(120, 136);
  const end = label.indexOf(0);
  return {
    inodesCount: buf.readUInt32LE(0),
    blockSize: 1024 << logBlock,
    inodeSize,
    needsRecovery: (incompat & INCOMPAT_RECOVER) !== 0,
    hasErrors: (buf.readUInt16LE(58) & 0x2) !== 0,
    label: label.subarray(0, end < 0 ? 16 : end).toString("latin1"),
    featureIncompat: incompat,
  };
}

export function uncleanError(diskPath: string): PyroError {
  return new PyroError(
    "WORKSPACE_NOT_STOPPED",
    "the workspace disk is in use or was not shut down cleanly (its journal needs recovery)",
    {
      details: { disk: diskPath, needs_recovery: true },
      hint: "stop the workspace first; after a crash, start and stop it once to replay the journal (or pass allowUnclean)",
    },
  );
}

function notExt4(image: string, why: string): PyroError {
  return new PyroError("IO_ERROR", `${image} is not an ext4 image (${why})`, { details: { disk: image } });
}

// ---------------------------------------------------------------- process runner

export interface RunResult {
  /** stdout as a byte string (latin1) */
  out: string;
  /** stderr lines other than the version banner */
  errors: string[];
}

export interface DebugfsOptions {
  /** open read-write (-w); only ever on a private copy */
  write?: boolean;
  timeoutMs?: number;
  outputCap?: number;
}

function debugfsEnv(): Record<string, string | undefined> {
  // no pager, no locale-dependent messages
  return { ...process.env, DEBUGFS_PAGER: "__none__", PAGER: "__none__", LC_ALL: "C", LANG: "C" };
}

const BANNER = /^debugfs \d[\w.-]* \(.*\)$/;

function stderrLines(bytes: Uint8Array): string[] {
  return Buffer.from(bytes)
    .toString("utf8")
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => l !== "" && !BANNER.test(l));
}

async function collect(
  argv: string[],
  stdin: Uint8Array | undefined,
  opts: { timeoutMs?: number; outputCap?: number; env?: Record<string, string | undefined> },
): Promise<{ stdout: Uint8Array; stderr: Uint8Array; exitCode: number }> {
  const cap = opts.outputCap ?? DEFAULT_OUTPUT_CAP;
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(argv, {
      stdin: stdin ? new Blob([stdin]) : "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: opts.env,
    });
  } catch (cause) {
    throw new PyroError("IO_ERROR", `cannot start ${argv[0]}: ${String(cause)}`, { cause });
  }
  let failure: PyroError | undefined;
  const timer = setTimeout(() => {
    failure = new PyroError(
      "IO_ERROR",
      `${argv[0]} timed out after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`,
    );
    proc.kill("SIGKILL");
  }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const read = async (stream: ReadableStream<Uint8Array>, limit: number) => {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of stream) {
      total += chunk.byteLength;
      if (total > limit) {
        failure ??= new PyroError("IO_ERROR", `${argv[0]} produced more than ${limit} bytes of output`);
        proc.kill("SIGKILL");
        break;
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  };
  try {
    const [stdout, stderr] = await Promise.all([
      read(proc.stdout as ReadableStream<Uint8Array>, cap),
      read(proc.stderr as ReadableStream<Uint8Array>, 1024 * 1024),
    ]);
    const exitCode = await proc.exited;
    if (failure) throw failure;
    return { stdout, stderr, exitCode };
  } finally {
    clearTimeout(timer);
  }
}

/** One debugfs request (`-R`): the whole string is one command line, newlines included. */
export async function debugfsRequest(image: string, request: string, opts: DebugfsOptions = {}) {
  if (request.startsWith("!")) throw new PyroError("INTERNAL", "debugfs shell escapes are never used");
  const argv = [findTool("debugfs"), ...(opts.write ? ["-w"] : []), "-R", request, image];
  const r = await collect(argv, undefined, { ...opts, env: debugfsEnv() });
  return { out: Buffer.from(r.stdout).toString("latin1"), errors: stderrLines(r.stderr) } satisfies RunResult;
}

/**
 * Many commands in one process (`-f -`). debugfs reads them with fgets and cuts each at
 * the first CR or LF, so a command must not contain either (callers use `<ino>` forms).
 */
export async function debugfsBatch(image: string, commands: string[], opts: DebugfsOptions = {}) {
  for (const c of commands) {
    if (/[\r\n\0]/.test(c) || c.startsWith("!") || c.startsWith("#") || c.length > 4000) {
      throw new PyroError("INTERNAL", `unsafe debugfs batch command: ${JSON.stringify(c)}`);
    }
  }
  const script = Buffer.from(commands.map((c) => `${c}\n`).join(""), "latin1");
  const argv = [findTool("debugfs"), ...(opts.write ? ["-w"] : []), "-f", "-", image];
  const r = await collect(argv, script, { ...opts, env: debugfsEnv() });
  return { out: Buffer.from(r.stdout).toString("latin1"), errors: stderrLines(r.stderr) } satisfies RunResult;
}

/** Run an e2fsprogs tool (e2fsck, cp…) with a plain argv; returns exit code and output. */
export async function runTool(
  argv: string[],
  opts: { timeoutMs?: number; env?: Record<string, string | undefined> } = {},
): Promise<{ exitCode: number; output: string }> {
  const r = await collect(argv, undefined, {
    timeoutMs: opts.timeoutMs ?? 30 * 60_000,
    outputCap: 16 * 1024 * 1024,
    env: opts.env ? { ...process.env, ...opts.env } : undefined,
  });
  const output = `${Buffer.from(r.stdout).toString("utf8")}${Buffer.from(r.stderr).toString("utf8")}`;
  return { exitCode: r.exitCode, output };
}

/**
 * `cat <ino>` streamed: skip `offset` bytes, keep `want`, then stop the process. Returns the
 * bytes actually received (fewer than `want` means debugfs failed; see `errors`).
 */
export async function debugfsCat(
  image: string,
  ino: number,
  offset: number,
  want: number,
  opts: { timeoutMs?: number } = {},
): Promise<{ bytes: Uint8Array; errors: string[] }> {
  const out = new Uint8Array(want);
  if (want === 0) return { bytes: out, errors: [] };
  const proc = Bun.spawn([findTool("debugfs"), "-R", `cat <${ino}>`, image], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: debugfsEnv(),
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  let got = 0;
  let skipped = 0;
  const stderrP = new Response(proc.stderr as ReadableStream<Uint8Array>).arrayBuffer();
  try {
    const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
    while (got < want) {
      const { value, done } = await reader.read();
      if (done) break;
      let chunk = value;
      if (skipped < offset) {
        const skip = Math.min(offset - skipped, chunk.byteLength);
        skipped += skip;
        chunk = chunk.subarray(skip);
      }
      const take = Math.min(chunk.byteLength, want - got);
      out.set(chunk.subarray(0, take), got);
      got += take;
    }
    if (got >= want) {
      // the rest is not wanted: stop debugfs instead of draining a large file
      await reader.cancel().catch(() => {});
      proc.kill("SIGKILL");
    }
    reader.releaseLock();
    await proc.exited;
    if (timedOut) throw new PyroError("IO_ERROR", "debugfs cat timed out");
    const errors = got >= want ? [] : stderrLines(new Uint8Array(await stderrP));
    return { bytes: out.subarray(0, got), errors };
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------- parsers

export interface LsEntry {
  ino: number;
  mode: number;
  /** raw name bytes as a latin1 string */
  name: string;
  /** size column (empty for directories → 0) */
  size: number;
}

const LS_LINE = /\/(\d+)\/([0-7]{1,7})\/(-?\d+)\/(-?\d+)\/([^/]*)\/(\d*)\/\n/y;

function echo(cmd: string): string {
  return `debugfs: ${cmd}\n`;
}

/**
 * Split batch output into each command's section, checking that the echoes come exactly
 * in the order the commands were sent. A section ends where the next echo starts a line;
 * `ls -p` entries are stepped over whole (their raw names may contain newlines and echo
 * look-alikes), and no other section type carries raw guest-chosen bytes.
 */
export function splitEchoed(out: string, commands: string[]): string[] {
  const sections: string[] = [];
  let pos = 0;
  for (let i = 0; i < commands.length; i++) {
    const e = echo(commands[i]!);
    if (!out.startsWith(e, pos)) throw unparsable(`expected echo of ${JSON.stringify(commands[i])}`);
    pos += e.length;
    const next = i + 1 < commands.length ? echo(commands[i + 1]!) : undefined;
    const end = next === undefined ? out.length : findSectionEnd(out, pos, next);
    sections.push(out.slice(pos, end));
    pos = end;
  }
  return sections;
}

/** Where a section ends: `ls -p` lines are stepped over whole, other lines one by one. */
function findSectionEnd(out: string, pos: number, nextEcho: string): number {
  let p = pos;
  while (p < out.length) {
    if (out.startsWith(nextEcho, p)) return p;
    if (out[p] === "/") {
      LS_LINE.lastIndex = p;
      const m = LS_LINE.exec(out);
      if (!m) throw unparsable("bad ls line");
      p = LS_LINE.lastIndex;
      continue;
    }
    // hex dump line, "*", blank line: no raw names can occur in them
    const nl = out.indexOf("\n", p);
    if (nl < 0) return out.length;
    p = nl + 1;
  }
  throw unparsable(`missing echo ${JSON.stringify(nextEcho.trimEnd())}`);
}

function unparsable(why: string): PyroError {
  return new PyroError("IO_ERROR", `unexpected debugfs output (${why}); the disk may be corrupt`, {
    hint: "check the image with e2fsck -fn",
  });
}

/** Parse one `ls -p` section; `.` and `..` are dropped. */
export function parseLs(section: string): LsEntry[] {
  const entries: LsEntry[] = [];
  let p = 0;
  while (p < section.length) {
    if (section[p] === "\n") {
      p++;
      continue;
    }
    LS_LINE.lastIndex = p;
    const m = LS_LINE.exec(section);
    if (!m) throw unparsable(`bad ls line at ${JSON.stringify(section.slice(p, p + 60))}`);
    p = LS_LINE.lastIndex;
    const name = m[5]!;
    if (name === "." || name === "..") continue;
    entries.push({ ino: Number(m[1]), mode: Number.parseInt(m[2]!, 8), name, size: Number(m[6] || "0") });
  }
  return entries;
}

const HEX_LINE = /^([0-7]{4,}) {2}([0-9a-f]{4}(?: [0-9a-f]{4}){7}) {2}/;

/** Rebuild the raw inode from one `inode_dump` section (octal offsets, `*` = repeat). */
export function parseInodeDump(section: string, inodeSize: number): Buffer {
  const buf = Buffer.alloc(inodeSize);
  let prev: Buffer | undefined;
  let prevOff = -16;
  let repeating = false;
  const fill = (upTo: number) => {
    if (!prev) throw unparsable("repeat before data");
    for (let o = prevOff + 16; o < upTo; o += 16) prev.copy(buf, o);
  };
  for (const line of section.split("\n")) {
    if (line === "") continue;
    if (line === "*") {
      repeating = true;
      continue;
    }
    const m = HEX_LINE.exec(line);
    if (!m) throw unparsable(`bad inode_dump line ${JSON.stringify(line.slice(0, 60))}`);
    const off = Number.parseInt(m[1]!, 8);
    if (off % 16 !== 0 || off + 16 > inodeSize || off <= prevOff) throw unparsable("bad inode_dump offset");
    if (repeating) fill(off);
    else if (off !== prevOff + 16) throw unparsable("gap in inode_dump");
    repeating = false;
    prev = Buffer.from(m[2]!.replaceAll(" ", ""), "hex");
    prev.copy(buf, off);
    prevOff = off;
  }
  if (repeating) fill(inodeSize);
  else if (prevOff + 16 !== inodeSize) throw unparsable("short inode_dump");
  return buf;
}

// ---------------------------------------------------------------- inodes

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

const EXT4_INLINE_DATA_FL = 0x10000000;
const EXT4_HUGE_FILE_FL = 0x40000;

export interface Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** modification time in ms since the epoch (nanoseconds truncated) */
  mtimeMs: number;
  /** character/block devices: the device number */
  rdev?: { major: number; minor: number };
  /** symlinks stored in the inode itself: the target bytes (latin1) */
  fastLinkTarget?: string;
  /** symlinks whose target must be read as file data */
  slowLink?: boolean;
}

export function decodeInode(ino: number, raw: Buffer, blockSize: number): Inode {
  const mode = raw.readUInt16LE(0);
  const uid = raw.readUInt16LE(2) | (raw.readUInt16LE(120) << 16);
  const gid = raw.readUInt16LE(24) | (raw.readUInt16LE(122) << 16);
  const size = raw.readUInt32LE(4) + raw.readUInt32LE(108) * 2 ** 32;
  const flags = raw.readUInt32LE(32);
  let seconds = raw.readInt32LE(16);
  let nanos = 0;
  if (raw.length > 128) {
    const extra = raw.readUInt16LE(128);
    if (extra >= 12 && 128 + extra <= raw.length) {
      const mtimeExtra = raw.readUInt32LE(136);
      seconds += (mtimeExtra & 3) * 2 ** 32; // epoch bits extend the signed 32-bit seconds
      nanos = mtimeExtra >>> 2;
    }
  }
  const inode: Inode = {
    ino,
    mode,
    uid,
    gid,
    size,
    mtimeMs: seconds * 1000 + Math.floor(Math.min(nanos, 999_999_999) / 1e6),
  };
  const type = mode & S_IFMT;
  if (type === S_IFCHR || type === S_IFBLK) {
    const b0 = raw.readUInt32LE(40);
    const b1 = raw.readUInt32LE(44);
    inode.rdev =
      b0 !== 0
        ? { major: (b0 >> 8) & 0xff, minor: b0 & 0xff }
        : { major: (b1 & 0xfff00) >> 8, minor: (b1 & 0xff) | ((b1 >> 12) & 0xfff00) };
  } else if (type === S_IFLNK) {
    // the kernel's rule: no data blocks (besides an xattr block) and no inline data
    let blocks = raw.readUInt32LE(28) + raw.readUInt16LE(116) * 2 ** 32;
    if (flags & EXT4_HUGE_FILE_FL) blocks *= blockSize / 512;
    const acl = raw.readUInt32LE(104) + raw.readUInt16LE(118) * 2 ** 32;
    const eaBlocks = acl ? blockSize / 512 : 0;
    if (!(flags & EXT4_INLINE_DATA_FL) && blocks - eaBlocks === 0 && size > 0 && size <= 60) {
      inode.fastLinkTarget = raw.subarray(40, 40 + size).toString("latin1");
    } else {
      inode.slowLink = true;
    }
  }
  return inode;
}

const needsDump = (mode: number) => {
  const t = mode & S_IFMT;
  return t === S_IFLNK || t === S_IFCHR || t === S_IFBLK;
};

const STAT_TYPES: Record<string, number> = {
  regular: S_IFREG,
  directory: S_IFDIR,
  FIFO: 0o010000,
  socket: S_IFSOCK,
};
const STAT_HEAD = /^Inode: (\d+) +Type: ([A-Za-z ]+?) +Mode: +([0-7]{4}) +Flags: 0x[0-9a-f]+\n/;
const STAT_OWNER = /^User: +(\d+) +Group: +(\d+)(?: +Project: +\d+)? +Size: (\d+)$/m;
const STAT_MTIME = /^ ?mtime: 0x([0-9a-f]{8})(?::([0-9a-f]{8}))? -- /m;

/**
 * The fields we need from one `stat` section (not for symlinks: their section embeds the
 * raw target). The header lines precede anything variable, so first matches are theirs.
 */
export function parseStat(ino: number, mode: number, section: string): Inode {
  const head = STAT_HEAD.exec(section);
  const owner = STAT_OWNER.exec(section);
  const mtime = STAT_MTIME.exec(section);
  if (!head || !owner || !mtime || Number(head[1]) !== ino) throw unparsable(`bad stat of inode ${ino}`);
  if (STAT_TYPES[head[2]!] !== (mode & S_IFMT))
    throw unparsable(`inode ${ino} is a ${head[2]}, not as listed`);
  let seconds = Buffer.from(mtime[1]!, "hex").readInt32BE(0);
  let nanos = 0;
  if (mtime[2] !== undefined) {
    const extra = Number.parseInt(mtime[2], 16);
    seconds += (extra & 3) * 2 ** 32;
    nanos = extra >>> 2;
  }
  return {
    ino,
    mode: (mode & S_IFMT) | Number.parseInt(head[3]!, 8),
    uid: Number(owner[1]),
    gid: Number(owner[2]),
    size: Number(owner[3]),
    mtimeMs: seconds * 1000 + Math.floor(Math.min(nanos, 999_999_999) / 1e6),
  };
}

/** An overlayfs whiteout: a character device 0/0 in the upper layer ("deleted below"). */
export function isWhiteout(inode: Pick<Inode, "mode" | "rdev">): boolean {
  return (inode.mode & S_IFMT) === S_IFCHR && inode.rdev?.major === 0 && inode.rdev.minor === 0;
}

// ---------------------------------------------------------------- reader session

/**
 * Read-only access to one image, with caches for the duration of one operation.
 */
export class DiskReader {
  readonly image: string;
  readonly sb: Superblock;
  private lsCache = new Map<number, LsEntry[]>();
  private inodeCache = new Map<number, Inode>();

  constructor(image: string, sb: Superblock = readSuperblock(image)) {
    this.image = image;
    this.sb = sb;
  }

  private checkIno(ino: number) {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.sb.inodesCount) {
      throw unparsable(`inode number ${ino} out of range`);
    }
  }

  private fail(what: string, errors: string[]): PyroError {
    return new PyroError("IO_ERROR", `debugfs failed to ${what}: ${errors.slice(0, 5).join("; ")}`, {
      details: { disk: this.image, errors: errors.slice(0, 20) },
      hint: "check the image with e2fsck -fn",
    });
  }

  /** Directory listings for many directories, one debugfs process per chunk. */
  async lsMany(dirs: number[]): Promise<Map<number, LsEntry[]>> {
    const todo = [...new Set(dirs)].filter((d) => !this.lsCache.has(d));
    for (let i = 0; i < todo.length; i += BATCH_CHUNK) {
      const chunk = todo.slice(i, i + BATCH_CHUNK);
      for (const d of chunk) this.checkIno(d);
      const commands = chunk.map((d) => `ls -p <${d}>`);
      const r = await debugfsBatch(this.image, commands);
      if (r.errors.length) throw this.fail("list directories", r.errors);
      const sections = splitEchoed(r.out, commands);
      chunk.forEach((d, k) => {
        this.lsCache.set(d, parseLs(sections[k]!));
      });
    }
    return new Map(dirs.map((d) => [d, this.lsCache.get(d)!]));
  }

  async ls(dir: number): Promise<LsEntry[]> {
    return (await this.lsMany([dir])).get(dir)!;
  }

  /**
   * Inode metadata. Symlinks and devices come from `inode_dump` (exact link bytes, raw
   * device numbers); everything else from `stat`, which is ~15x cheaper (debugfs writes
   * unbuffered in batch mode, and a hex dump is hundreds of tiny writes) and whose output
   * holds no raw bytes of the guest's choosing for such inodes (xattr names and values are
   * escaped), so its lines and the batch echoes cannot be forged.
   */
  async inodes(items: { ino: number; mode: number }[]): Promise<Map<number, Inode>> {
    const todo = new Map<number, number>();
    for (const { ino, mode } of items) if (!this.inodeCache.has(ino)) todo.set(ino, mode);
    const list = [...todo];
    for (let i = 0; i < list.length; i += BATCH_CHUNK) {
      const chunk = list.slice(i, i + BATCH_CHUNK);
      for (const [n] of chunk) this.checkIno(n);
      const commands = chunk.map(([n, mode]) => (needsDump(mode) ? `inode_dump <${n}>` : `stat <${n}>`));
      const r = await debugfsBatch(this.image, commands);
      if (r.errors.length) throw this.fail("read inodes", r.errors);
      const sections = splitEchoed(r.out, commands);
      chunk.forEach(([n, mode], k) => {
        const inode = needsDump(mode)
          ? decodeInode(n, parseInodeDump(sections[k]!, this.sb.inodeSize), this.sb.blockSize)
          : parseStat(n, mode, sections[k]!);
        if ((inode.mode & S_IFMT) !== (mode & S_IFMT)) throw unparsable(`inode ${n} changed type`);
        this.inodeCache.set(n, inode);
      });
    }
    return new Map(items.map(({ ino }) => [ino, this.inodeCache.get(ino)!]));
  }

  async inode(ino: number, mode: number): Promise<Inode> {
    return (await this.inodes([{ ino, mode }])).get(ino)!;
  }

  /** Link targets (latin1 bytes) for symlink inodes; slow links are read in one batch. */
  async readlinks(inodes: Inode[]): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    const slow: Inode[] = [];
    for (const n of inodes) {
      if (n.fastLinkTarget !== undefined) out.set(n.ino, n.fastLinkTarget);
      else if (n.size === 0 || n.size > MAX_SYMLINK_TARGET) out.set(n.ino, "");
      else slow.push(n);
    }
    for (let i = 0; i < slow.length; i += BATCH_CHUNK) {
      const chunk = slow.slice(i, i + BATCH_CHUNK);
      const commands = chunk.map((n) => `cat <${n.ino}>`);
      const r = await debugfsBatch(this.image, commands);
      if (r.errors.length) throw this.fail("read symbolic links", r.errors);
      // each section is exactly the target's bytes: walk by the known sizes
      let pos = 0;
      chunk.forEach((n, k) => {
        const e = echo(commands[k]!);
        if (!r.out.startsWith(e, pos)) throw unparsable("symlink batch out of step");
        pos += e.length;
        out.set(n.ino, r.out.slice(pos, pos + n.size));
        pos += n.size;
      });
      if (pos !== r.out.length) throw unparsable("symlink batch has trailing output");
    }
    return out;
  }

  async readlink(inode: Inode): Promise<string> {
    return (await this.readlinks([inode])).get(inode.ino)!;
  }
}
