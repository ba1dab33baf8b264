/**
 * Cross-process file locks with flock(2): the kernel drops a lock when its holder dies,
 * so a crashed pyro never wedges the others. Non-blocking attempts with backoff keep the
 * event loop free while waiting.
 */
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { PyroError } from "../protocol/errors.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;

let flockFn: ((fd: number, op: number) => number) | null = null;
function flock(fd: number, op: number): number {
  if (!flockFn) {
    const lib = dlopen("libc.so.6", { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
    flockFn = lib.symbols.flock as (fd: number, op: number) => number;
  }
  return flockFn(fd, op);
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export async function withLock<T>(path: string, fn: () => Promise<T> | T, timeoutMs = 30000): Promise<T> {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, "a", 0o600);
  try {
    const deadline = Date.now() + timeoutMs;
    let wait = 1;
    while (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      if (Date.now() > deadline) throw new PyroError("LOCK_TIMEOUT", `timed out waiting for lock ${path}`);
      await Bun.sleep(wait + Math.random() * wait);
      wait = Math.min(wait * 2, 25);
    }
    return await fn();
  } finally {
    closeSync(fd); // closing the descriptor releases the lock
  }
}

/**
 * Take the lock on `path` only if it is free right now, and keep it for the rest of the process
 * (the kernel drops it when the process exits): for a holder that ends by exiting, such as a
 * supervisor pausing its workspace. False when another process holds it.
 */
export function holdLockUntilExit(path: string): boolean {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, "a", 0o600);
  if (flock(fd, LOCK_EX | LOCK_NB) === 0) return true; // fd deliberately left open
  closeSync(fd);
  return false;
}
