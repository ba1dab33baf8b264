/**
 * The *at() system calls (openat, readlinkat, mkdirat, unlinkat, renameat, linkat,
 * symlinkat) through bun:ffi on libc: Node/Bun's fs only takes path strings, and a path
 * string is re-resolved by the kernel on every call, which is what lets a concurrent
 * directory↔symlink swap redirect an operation. With these, every name is looked up in a
 * directory *fd* we hold, one component at a time. Shared by the agent (guest/paths.ts
 * builds the race-free walk of user paths on top) and by the archive codec's unpack and
 * pack (archive/safepath.ts, pack.ts), which the host runs too: Linux with glibc on both.
 *
 * Conventions: `name` is a single component (no "/"), except "" with readlinkat on an
 * O_PATH fd of the link itself. Failures throw an Error carrying Node's `code` ("ENOENT",
 * "ELOOP", ...) and `errno`, so fsError() maps them like any fs error; they never name a
 * path. Fds returned are O_CLOEXEC and owned by the caller (close with closeFd). fstat,
 * read, write, fchmod, fchown, fsync and close use node:fs on the fd number. A directory
 * fd can be listed through `/proc/self/fd/N` (fdPath): the magic link reopens exactly the
 * directory the fd refers to, whatever has been renamed or swapped since.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { closeSync, fstatSync, type Stats } from "node:fs";
import { constants as osConstants } from "node:os";
import { fsError } from "./archive/fserror.ts";

/** Linux x86_64 / aarch64 values (asm-generic and x86 agree on these). */
export const O = {
  RDONLY: 0,
  WRONLY: 0o1,
  CREAT: 0o100,
  EXCL: 0o200,
  NONBLOCK: 0o4000,
  DIRECTORY: 0o200000,
  NOFOLLOW: 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;
export const AT_FDCWD = -100;
export const AT_REMOVEDIR = 0x200;
const PATH_MAX = 4096;

function openLibc() {
  return dlopen("libc.so.6", {
    openat: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.u32], returns: FFIType.i32 },
    readlinkat: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64_fast },
    mkdirat: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    unlinkat: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    renameat: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    linkat: {
      args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32],
      returns: FFIType.i32,
    },
    symlinkat: { args: [FFIType.ptr, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}
let libc: ReturnType<typeof openLibc> | null = null;
const lib = () => {
  libc ??= openLibc();
  return libc;
};

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

/** The errno of the call that just failed, as a Node-style error (no path in it). */
function fail(call: string): never {
  // Read right after the failing call; nothing in between runs on this thread.
  const loc = lib().__errno_location();
  const errno = loc ? read.i32(loc, 0) : 0;
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
  throw Object.assign(new Error(`${call}: ${code}`), { code, errno, syscall: call });
}

function cstr(name: string): Buffer {
  if (name.includes("\0")) throw Object.assign(new Error("EINVAL"), { code: "EINVAL" });
  return Buffer.from(`${name}\0`);
}

export function openat(dirFd: number, name: string, flags: number, mode = 0): number {
  const c = cstr(name); // kept in a local so it outlives the call
  const fd = lib().openat(dirFd, ptr(c), flags | O.CLOEXEC, mode);
  if (fd < 0) fail("openat");
  return fd;
}

/** The target of a symlink, as raw bytes decoded UTF-8 (like fs.readlink). */
export function readlinkat(dirFd: number, name: string): string {
  const buf = Buffer.alloc(PATH_MAX);
  const c = cstr(name);
  const n = Number(lib().readlinkat(dirFd, ptr(c), ptr(buf), PATH_MAX));
  if (n < 0) fail("readlinkat");
  return buf.subarray(0, n).toString("utf8");
}

export function mkdirat(dirFd: number, name: string, mode: number): void {
  const c = cstr(name);
  if (lib().mkdirat(dirFd, ptr(c), mode) < 0) fail("mkdirat");
}

export function unlinkat(dirFd: number, name: string, flags = 0): void {
  const c = cstr(name);
  if (lib().unlinkat(dirFd, ptr(c), flags) < 0) fail("unlinkat");
}

export function renameat(fromDir: number, from: string, toDir: number, to: string): void {
  const a = cstr(from);
  const b = cstr(to);
  if (lib().renameat(fromDir, ptr(a), toDir, ptr(b)) < 0) fail("renameat");
}

/** A hard link `to` in `toDir` to `from` in `fromDir` (a final symlink is linked, not followed). */
export function linkat(fromDir: number, from: string, toDir: number, to: string): void {
  const a = cstr(from);
  const b = cstr(to);
  if (lib().linkat(fromDir, ptr(a), toDir, ptr(b), 0) < 0) fail("linkat");
}

/** A symlink `name` in `dirFd` holding `target` verbatim (any bytes but NUL). */
export function symlinkat(target: string, dirFd: number, name: string): void {
  const t = cstr(target);
  const c = cstr(name);
  if (lib().symlinkat(ptr(t), dirFd, ptr(c)) < 0) fail("symlinkat");
}

/**
 * An O_PATH|O_NOFOLLOW fd for `name` in `dirFd` and what it is (a symlink is the link
 * itself), or undefined if there is nothing by that name. Errors name `shown` (fsError).
 */
export function lookupAt(dirFd: number, name: string, shown: string): { fd: number; st: Stats } | undefined {
  let fd: number;
  try {
    fd = openat(dirFd, name, O.PATH | O.NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fsError(err, shown);
  }
  try {
    return { fd, st: fstatSync(fd) };
  } catch (err) {
    closeFd(fd);
    throw fsError(err, shown);
  }
}

export function closeFd(fd: number | undefined): void {
  if (fd === undefined || fd < 0) return;
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing to release
  }
}

/** A path naming exactly the object behind `fd` (for APIs that only take paths: readdir). */
export function fdPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}
