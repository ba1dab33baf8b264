/**
 * Disk images as snapshots: copy a workspace's data disk (a sparse ext4 file) cheaply,
 * digest it by content, verify a copy before it is used, and swap a verified copy in.
 *
 * Copy: `cp --reflink=always` first (FICLONE: btrfs, XFS with reflink, bcachefs — the copy
 * shares every block and costs nothing), else `cp --sparse=always` (coreutils walks the data
 * extents with SEEK_DATA/SEEK_HOLE and writes runs of zeros as holes, so an 8 GiB disk
 * holding 50 MB costs what it holds). ext4 and overlayfs, the usual homes of PYRO_HOME, have
 * no reflink: there every snapshot and reset pays one sparse copy of the disk's data.
 *
 * Digest (`sha256-nz64k:`): SHA-256 over every 64 KiB block of the image that holds a
 * non-zero byte, in order, each fed as its block index (u64 LE) then its bytes, and finally
 * the image's size (u64 LE). Only data extents are read (SEEK_DATA/SEEK_HOLE), so digesting
 * an 8 GiB disk holding 50 MB reads ~50 MB, yet any changed byte changes the digest: a byte
 * changed inside a digested block changes that block's bytes; a byte made non-zero in an
 * all-zero block or hole adds a block; one zeroed away changes the bytes or drops the block.
 * The digest is of the content, not the layout: a hole and a run of written zeros digest the
 * same, which a sparse copy needs (it turns one into the other).
 *
 * A reset never deletes the current disk before its replacement is verified: the new disk
 * is written BESIDE the current one (`<disk>.new-PID`), checked against the snapshot's
 * recorded digest, fsynced, and only then renamed over the current disk (one atomic rename,
 * the commit point). Temp names carry the writer's pid; `sweepTemps` removes those of dead
 * writers (a crash between the copy and the rename leaves one).
 *
 * Fault points (PYRO_FAULT, src/base/fault.ts): FAULT_STEPS below, in the order they run.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import {
  closeSync,
  fstatSync,
  fsyncSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { constants as osConstants } from "node:os";
import { join } from "node:path";
import { fault } from "../base/fault.ts";
import { PyroError } from "../protocol/errors.ts";
import { callWorkspace } from "./client.ts";
import type { WorkspaceRecord } from "./record.ts";

/** The crash points of snapshot create and reset, in order (PYRO_FAULT=<step>). */
export const FAULT_STEPS = [
  /** snapshot create: the guest's disk is frozen, nothing copied yet */
  "snapshot.frozen",
  /** snapshot create: the image is copied (still frozen), not yet digested or published */
  "snapshot.copied",
  /** snapshot create: the image is in place, its metadata (digest) not yet written */
  "snapshot.published",
  /** reset: the snapshot image is copied beside the current disk, not yet verified */
  "reset.copied",
  /** reset: the copy is verified and fsynced; the old machine still runs */
  "reset.verified",
  /** reset: the old machine is stopped; the current disk is still the old one */
  "reset.stopped",
  /** reset: the new disk has been renamed over the old one (the commit point) */
  "reset.swapped",
  /** reset: history cleared and the record says reset; the new machine not yet booted */
  "reset.recorded",
] as const;
export type FaultStep = (typeof FAULT_STEPS)[number];

export const DIGEST_BLOCK = 64 * 1024;
export const IMAGE_DIGEST_PREFIX = "sha256-nz64k:";
export const TAR_DIGEST_PREFIX = "sha256:";
/**
 * How long the guest stays frozen at most if the host never thaws it (a copy that took longer
 * is refused): 30 s plus the disk's allocated bytes at 50 MB/s, at most 10 minutes. A CLI
 * killed mid-copy leaves writers in the guest waiting that long, unless the next snapshot
 * (which thaws first: under the lifecycle lock, a freeze can only be a dead copier's) or a
 * reset (which stops the machine) comes sooner.
 */
export function freezeTimeoutMs(disk: string): number {
  let allocated = 0;
  try {
    allocated = statSync(disk).blocks * 512;
  } catch {}
  return Math.min(600_000, 30_000 + Math.ceil(allocated / 50_000));
}

const SEEK_DATA = 3;
const SEEK_HOLE = 4;

function openLibc() {
  return dlopen("libc.so.6", {
    lseek: { args: [FFIType.i32, FFIType.i64, FFIType.i32], returns: FFIType.i64_fast },
    renameat2: {
      args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u32],
      returns: FFIType.i32,
    },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}
let libc: ReturnType<typeof openLibc> | null = null;
const lib = () => {
  libc ??= openLibc();
  return libc;
};
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));
function lastErrno(): string {
  const loc = lib().__errno_location();
  const errno = loc ? read.i32(loc, 0) : 0;
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/** The next offset >= pos in a data extent (SEEK_DATA), or the next hole; -1 past the data. */
function seek(fd: number, pos: number, whence: number): number | "ENXIO" | "EINVAL" {
  const r = Number(lib().lseek(fd, pos, whence));
  if (r >= 0) return r;
  const e = lastErrno();
  if (e === "ENXIO" || e === "EINVAL") return e;
  throw new PyroError("IO_ERROR", `lseek failed: ${e}`);
}

export interface ImageDigest {
  digest: string;
  /** the image's apparent size */
  size: number;
  /** bytes in the non-zero blocks that were digested */
  data_bytes: number;
}

/** The content digest of an image file (see the header). */
export function imageDigest(path: string): ImageDigest {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const h = new Bun.CryptoHasher("sha256");
    const CHUNK_BLOCKS = 64; // 4 MiB reads
    const buf = Buffer.alloc(CHUNK_BLOCKS * DIGEST_BLOCK);
    const zero = Buffer.alloc(DIGEST_BLOCK);
    const word = Buffer.alloc(8);
    let dataBytes = 0;
    let next = 0; // first block not yet digested
    let pos = 0;
    while (pos < size) {
      const found = seek(fd, pos, SEEK_DATA);
      if (found === "ENXIO") break; // no data after pos
      let start = pos;
      let end = size; // no SEEK_DATA on this filesystem: read everything
      if (found !== "EINVAL") {
        start = found;
        const hole = seek(fd, start, SEEK_HOLE);
        end = typeof hole === "number" ? Math.min(hole, size) : size;
      }
      let b = Math.max(Math.floor(start / DIGEST_BLOCK), next);
      const bEnd = Math.ceil(end / DIGEST_BLOCK);
      while (b < bEnd) {
        const n = Math.min(CHUNK_BLOCKS, bEnd - b);
        const off = b * DIGEST_BLOCK;
        const len = Math.min(n * DIGEST_BLOCK, size - off);
        let got = 0;
        while (got < len) {
          const r = readSync(fd, buf, got, len - got, off + got);
          if (r === 0) break;
          got += r;
        }
        buf.fill(0, got, len); // the file shrank under us: what is gone reads as zeros
        for (let j = 0; j * DIGEST_BLOCK < len; j++) {
          const block = buf.subarray(j * DIGEST_BLOCK, Math.min((j + 1) * DIGEST_BLOCK, len));
          if (block.equals(zero.subarray(0, block.length))) continue;
          word.writeBigUInt64LE(BigInt(b + j));
          h.update(word);
          h.update(block);
          dataBytes += block.length;
        }
        b += n;
      }
      next = bEnd;
      pos = Math.max(end, bEnd * DIGEST_BLOCK);
    }
    word.writeBigUInt64LE(BigInt(size));
    h.update(word);
    return { digest: IMAGE_DIGEST_PREFIX + h.digest("hex"), size, data_bytes: dataBytes };
  } finally {
    closeSync(fd);
  }
}

/** SHA-256 of a whole file (tar snapshots of host-compat workspaces). */
export async function fileSha256(path: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) h.update(chunk);
  return TAR_DIGEST_PREFIX + h.digest("hex");
}

/** What a snapshot file was when it was taken; checked before the file is used. */
export interface RecordedContent {
  digest: string;
  /** apparent size of the file */
  image_bytes: number;
}

/**
 * Check a file (a fresh copy of a snapshot, or a tar) against what was recorded when its
 * snapshot was taken. A mismatch is SNAPSHOT_CORRUPT; nothing has been changed by then.
 */
export async function verifyContent(path: string, want: RecordedContent, snapshot: string): Promise<void> {
  const got = want.digest.startsWith(IMAGE_DIGEST_PREFIX)
    ? imageDigest(path)
    : { digest: await fileSha256(path), size: fstatSize(path) };
  if (got.digest !== want.digest || got.size !== want.image_bytes) {
    throw new PyroError(
      "SNAPSHOT_CORRUPT",
      `snapshot "${snapshot}" does not match the digest recorded when it was taken; it was not used and the workspace is unchanged`,
      {
        details: {
          snapshot,
          expected: { digest: want.digest, image_bytes: want.image_bytes },
          actual: { digest: got.digest, image_bytes: got.size },
        },
        hint:
          snapshot === "baseline"
            ? "the baseline cannot be restored; delete the workspace and create it again"
            : `delete it (\`pyro workspace snapshot delete ID ${snapshot}\`) and take a new one`,
      },
    );
  }
}

function fstatSize(path: string): number {
  const fd = openSync(path, "r");
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

export type CopyMethod = "reflink" | "sparse_copy";

async function cp(args: string[]): Promise<{ ok: boolean; err: string }> {
  const p = Bun.spawn(["cp", ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  return { ok: code === 0, err: err.trim() };
}

/** devices where a reflink was refused once: skip the attempt there (per process) */
const noReflink = new Set<number>();

/** Copy an image: a reflink where the filesystem can, else a sparse copy (see the header). */
export async function cloneImage(src: string, dst: string): Promise<CopyMethod> {
  rmSync(dst, { force: true });
  const dev = fstatDev(src);
  if (!noReflink.has(dev)) {
    if ((await cp(["--reflink=always", "--", src, dst])).ok) return "reflink";
    noReflink.add(dev);
    rmSync(dst, { force: true });
  }
  const r = await cp(["--sparse=always", "--", src, dst]);
  if (!r.ok) {
    rmSync(dst, { force: true });
    throw new PyroError("IO_ERROR", `cannot copy the disk image: ${r.err.split("\n").slice(-2).join(" ")}`, {
      details: { from: src },
    });
  }
  return "sparse_copy";
}

function fstatDev(path: string): number {
  const fd = openSync(path, "r");
  try {
    return fstatSync(fd).dev;
  } finally {
    closeSync(fd);
  }
}

/** fsync a file or a directory by path. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Copy a workspace's data disk to `dst` as a consistent, clean image. A started workspace's
 * guest flushes and freezes its data filesystem for the copy (fs.freeze) and thaws after;
 * a stopped workspace's disk is copied as it is (the caller holds the lifecycle lock, so it
 * stays stopped). The copy lands in `dst.tmp-PID`, is digested and fsynced, then renamed to
 * `dst`. Returns what to record.
 */
export async function captureImage(
  home: string,
  r: WorkspaceRecord,
  disk: string,
  dst: string,
): Promise<RecordedContent & { method: CopyMethod; allocated_bytes: number }> {
  const tmp = `${dst}.tmp-${process.pid}`;
  try {
    let method: CopyMethod;
    if (r.state === "started") {
      const timeoutMs = freezeTimeoutMs(disk);
      // a freeze still held can only be a dead copier's (callers hold the lifecycle lock)
      await callWorkspace(home, r, { op: "fs.thaw" });
      await callWorkspace(home, r, { op: "fs.freeze", timeout_ms: timeoutMs });
      let copied: CopyMethod | undefined;
      let copyErr: unknown;
      try {
        fault("snapshot.frozen");
        copied = await cloneImage(disk, tmp);
        fault("snapshot.copied");
      } catch (err) {
        copyErr = err;
      }
      const t = await callWorkspace(home, r, { op: "fs.thaw" }).catch((err) => {
        throw copyErr ?? err;
      });
      if (copyErr) throw copyErr;
      if (!t.thawed) {
        throw new PyroError(
          "IO_ERROR",
          "the copy outlived the guest's freeze; it is not consistent and was dropped",
          {
            details: { freeze_timeout_ms: timeoutMs },
          },
        );
      }
      method = copied as CopyMethod;
    } else {
      method = await cloneImage(disk, tmp);
    }
    const d = imageDigest(tmp);
    fsyncPath(tmp);
    renameSync(tmp, dst);
    const fd = openSync(dst, "r");
    let allocated = 0;
    try {
      allocated = fstatSync(fd).blocks * 512;
    } finally {
      closeSync(fd);
    }
    return { digest: d.digest, image_bytes: d.size, method, allocated_bytes: allocated };
  } finally {
    rmSync(tmp, { force: true });
  }
}

const RENAME_EXCHANGE = 2;
const AT_FDCWD = -100;

/**
 * Swap two paths atomically (renameat2 RENAME_EXCHANGE): after it, `a` holds what `b` held
 * and the other way round; a crash sees either both old or both new. Used for host-compat
 * workspace directories (a directory cannot be renamed over a non-empty one).
 */
export function exchangePaths(a: string, b: string): void {
  const ca = Buffer.from(`${a}\0`);
  const cb = Buffer.from(`${b}\0`);
  if (lib().renameat2(AT_FDCWD, ptr(ca), AT_FDCWD, ptr(cb), RENAME_EXCHANGE) === 0) return;
  throw new PyroError("IO_ERROR", `cannot swap ${a} and ${b}: ${lastErrno()}`);
}

/** Remove temp files (`NAME.tmp-PID`, `NAME.new-PID`) in `dir` whose writer is gone. */
export function sweepTemps(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /\.(?:tmp|new)-(\d+)$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || alive(pid)) continue;
    rmSync(join(dir, n), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
