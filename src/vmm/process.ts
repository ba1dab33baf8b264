/**
 * What every backend does with its child process (QEMU, Firecracker, the host agent), in
 * one place: start it so it dies with its spawner, refuse socket paths the kernel cannot
 * bind, stop it (ask → wait → SIGKILL), tail its logs for error messages, and sleep
 * between retries without outliving an abort.
 *
 * Invariant of stopProcess: when it resolves, the process has exited (it never returns
 * while the child runs, whatever `ask` does).
 */
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, fstatSync, openSync, readSync, rmSync } from "node:fs";
import type { Env } from "../base/paths.ts";
import { PyroError } from "../protocol/errors.ts";

/**
 * `setpriv --pdeathsig SIG --` (util-linux) sets PR_SET_PDEATHSIG and execs the command in
 * place, so the pid stays the child's and the kernel signals it when its spawner dies. The
 * death signal follows the spawning *thread*: Bun spawns from the JS thread, which lives as
 * long as the process. Without setpriv there is no such guarantee: the result is `[]` and
 * callers rely on pid checks. KILL for VMMs; TERM for the host agent, which must kill the
 * process groups it started.
 */
export function pdeathsigPrefix(signal: "KILL" | "TERM" = "KILL", env: Env = process.env): string[] {
  const setpriv = Bun.which("setpriv", { PATH: env.PATH ?? "" });
  return setpriv ? [setpriv, "--pdeathsig", signal, "--"] : [];
}

/**
 * Transparent huge pages for a VMM, from `PYRO_VMM_THP`: "on" leaves them as the host has
 * them; unset or anything else ("off") disables them for the VMM's process tree. QEMU madvises
 * its TCG translation buffer (and a cold boot's anonymous guest RAM) MADV_HUGEPAGE, so with
 * THP in "madvise" or "always" mode every 2 MiB of the buffer it touches becomes resident at
 * once: measured on an idle template clone, the buffer's RSS 48 MiB with THP vs ~34 without
 * (docs/templates.md "RAM per idle workspace").
 */
export function vmmThpDisabled(env: Env = process.env): boolean {
  return env.PYRO_VMM_THP !== "on";
}

const PR_SET_THP_DISABLE = 41;
const PR_GET_THP_DISABLE = 42;
type Prctl = (option: number, a: number, b: number, c: number, d: number) => number;
let prctlFn: Prctl | null = null;
function prctl(option: number, arg: number): number {
  if (!prctlFn) {
    const lib = dlopen("libc.so.6", {
      prctl: {
        args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64],
        returns: FFIType.i32,
      },
    });
    prctlFn = lib.symbols.prctl as unknown as Prctl;
  }
  return prctlFn(option, arg, 0, 0, 0);
}

/** This process's PR_GET_THP_DISABLE: 1 disabled, 0 not, -1 when the kernel cannot say. */
export function thpDisabledHere(): number {
  return prctl(PR_GET_THP_DISABLE, 0);
}

/**
 * Run `spawn` (a synchronous Bun.spawn) with THP disabled for the child when `disable`:
 * PR_SET_THP_DISABLE is a flag of the calling process's address space that a child inherits
 * at fork and keeps across execve, so it is set on this process for the spawn only and
 * cleared again right after (Bun.spawn has forked/exec'd the child when it returns); the
 * spawner itself keeps THP as the host has it. Where prctl fails (an old kernel), the child
 * is spawned as it would be without.
 */
export function spawnThp<T>(disable: boolean, spawn: () => T): T {
  if (!disable) return spawn();
  const before = thpDisabledHere();
  if (before !== 0) return spawn(); // already disabled (inherited), or not supported
  if (prctl(PR_SET_THP_DISABLE, 1) !== 0) return spawn();
  try {
    return spawn();
  } finally {
    prctl(PR_SET_THP_DISABLE, 0);
  }
}

/** sun_path is 108 bytes including the NUL: a longer socket path cannot be bound at all. */
export const MAX_SOCKET_PATH = 107;

/**
 * Make the socket paths a VMM is about to bind usable: INVALID_INPUT when one is too long,
 * and a stale socket left by a killed predecessor is removed (a VMM will not bind over it).
 */
export function prepareSocketPaths(paths: readonly string[]): void {
  for (const p of paths) {
    const len = Buffer.byteLength(p);
    if (len > MAX_SOCKET_PATH) {
      throw new PyroError(
        "INVALID_INPUT",
        `socket path too long for a UNIX socket (${len} > ${MAX_SOCKET_PATH} bytes): ${p}`,
        { details: { path: p, bytes: len, max: MAX_SOCKET_PATH }, hint: "use a shorter PYRO_HOME" },
      );
    }
    rmSync(p, { force: true });
  }
}

/** The last `bytes` of a file as text, "" when it is missing or unreadable (for error details). */
export function tailFile(path: string, bytes = 4096): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const size = fstatSync(fd).size;
    const len = Math.min(bytes, size);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf.toString("utf8");
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** True when `p` settles (either way) within `ms`, false when the time runs out first. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), Math.max(0, ms));
  });
  const settled = p.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The part of a Bun.Subprocess stopProcess uses. */
export interface Killable {
  kill(signal?: NodeJS.Signals | number): void;
}

/**
 * Stop a child: `ask` it to end (QMP quit, Ctrl-Alt-Del, SIGTERM; its errors are ignored),
 * wait until `exited` settles or `timeoutMs` (asking included) has passed, then SIGKILL it,
 * and resolve once it has exited.
 */
export async function stopProcess(
  proc: Killable,
  exited: Promise<unknown>,
  timeoutMs: number,
  ask: () => unknown,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let asked: Promise<unknown>;
  try {
    asked = Promise.resolve(ask());
  } catch (err) {
    asked = Promise.reject(err);
  }
  await settlesWithin(asked, timeoutMs);
  if (!(await settlesWithin(exited, deadline - Date.now()))) proc.kill("SIGKILL");
  await exited.catch(() => {});
}
