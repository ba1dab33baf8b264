/**
 * Persistent shells in the guest: one PTY (Bun.Terminal, see pty.ts) per shell, running an
 * interactive shell (bash, else sh) as the leader of its own session with the PTY as its
 * controlling terminal, so job control works and signals reach the foreground job.
 *
 * Invariants:
 * - The shell.open stream lives as long as the shell: output goes out as channel-1 data
 *   frames as it arrives, the result (exit code or signal) ends the stream. Whoever opened it
 *   (the supervisor) keeps the output; the agent keeps none.
 * - The working directory is resolved under the root by the race-free resolver (paths.ts).
 * - shell.signal goes to the PTY's foreground process group (tpgid of the shell, as
 *   tcgetpgrp reports it), else to the shell's own group.
 * - Nothing of a shell outlives it: close hangs up its session and kills what is left of the
 *   session after a grace period; a client that abandons the stream, and the agent's exit
 *   (host compat), kill every process of every session at once.
 * - An id names one shell for the agent's life: an ended shell's id answers SHELL_CLOSED.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import type { ServerStream } from "../src/protocol/connection.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { Channel } from "../src/protocol/frame.ts";
import type { Request } from "../src/protocol/messages.ts";
import { displayPath, realRoot, resolveInRoot } from "./paths.ts";
import { secretEnv } from "./secrets.ts";
import { spawnUnprotected } from "./system.ts";

type ShellOpen = Extract<Request, { op: "shell.open" }>;

export const DEFAULT_COLS = 120;
export const DEFAULT_ROWS = 30;
/** After close's SIGHUP, how long the session may take to end before SIGKILL. */
const CLOSE_GRACE_MS = 1000;
/** After the shell exits, how long to wait for the PTY's last bytes (background jobs may hold it open). */
const DRAIN_MS = 300;
/** Ended ids remembered for SHELL_CLOSED (oldest forgotten first). */
const MAX_ENDED = 1000;

interface Shell {
  term: Bun.Terminal;
  proc: Bun.Subprocess;
}

const shells = new Map<string, Shell>();
const ended = new Set<string>();

function lookup(id: string): Shell {
  const sh = shells.get(id);
  if (sh) return sh;
  if (ended.has(id)) throw new PyroError("SHELL_CLOSED", `shell ${id} has ended`);
  throw new PyroError("SHELL_NOT_FOUND", `no shell ${id}`);
}

/** Fields of /proc/PID/stat after the command name: state ppid pgrp session tty_nr tpgid ... */
function procStat(pid: number): string[] | null {
  try {
    return (readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1] ?? "").split(" ");
  } catch {
    return null;
  }
}

/** Every process of session `sid` (the shell and all it started, in any group). */
function sessionPids(sid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid > 1 && Number(procStat(pid)?.[3]) === sid) out.push(pid);
  }
  return out;
}

function killSession(sid: number): void {
  for (const pid of sessionPids(sid)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
}

let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Host compat has no VM boundary: the agent's exit takes its shells' sessions with it.
  process.on("exit", () => {
    for (const sh of shells.values()) killSession(sh.proc.pid);
  });
}

function shellArgv(): string[] {
  return existsSync("/bin/bash") ? ["/bin/bash", "-i"] : ["/bin/sh", "-i"];
}

export async function openShell(
  ctx: { root: string; baseEnv: Record<string, string> },
  req: ShellOpen,
  stream: ServerStream,
): Promise<void> {
  if (shells.has(req.shell_id) || ended.has(req.shell_id))
    throw new PyroError("INVALID_INPUT", `shell id ${req.shell_id} is already in use`);
  const secrets = secretEnv(req.secret_env);
  const cwd = req.cwd ? await resolveInRoot(ctx.root, req.cwd, { followFinalSymlink: true }) : ctx.root;
  const cwdStat = await stat(cwd).catch(() => null);
  if (!cwdStat) throw new PyroError("FILE_NOT_FOUND", `working directory ${req.cwd} does not exist`);
  if (!cwdStat.isDirectory())
    throw new PyroError("NOT_A_DIRECTORY", `working directory ${req.cwd} is not a directory`);
  const shownCwd = displayPath(await realRoot(ctx.root), cwd);
  if (stream.clientGone) return;

  let eof: () => void = () => {};
  const drained = new Promise<void>((res) => {
    eof = res;
  });
  const term = new Bun.Terminal({
    cols: req.cols ?? DEFAULT_COLS,
    rows: req.rows ?? DEFAULT_ROWS,
    name: "xterm-256color",
    data: (_t, bytes) => stream.sendData(bytes.slice(), Channel.STDOUT),
    exit: () => eof(),
  });
  let proc: Bun.Subprocess;
  try {
    // Commands never inherit the agent's OOM immunity (system.ts); detached = setsid, so the
    // PTY becomes the new session's controlling terminal.
    proc = spawnUnprotected(() =>
      Bun.spawn(shellArgv(), {
        terminal: term,
        cwd,
        env: { ...ctx.baseEnv, TERM: "xterm-256color", ...(req.env ?? {}), ...secrets },
        detached: true,
      }),
    );
  } catch (err) {
    term.close();
    throw new PyroError("INVALID_INPUT", `cannot start a shell: ${(err as Error).message}`);
  }
  installExitHook();
  shells.set(req.shell_id, { term, proc });
  stream.sendJson({ type: "started", pid: proc.pid, cwd: shownCwd });
  stream.onAbandon(() => killSession(proc.pid));

  const code = await proc.exited;
  await Promise.race([drained, Bun.sleep(DRAIN_MS)]);
  term.close();
  shells.delete(req.shell_id);
  ended.add(req.shell_id);
  if (ended.size > MAX_ENDED) ended.delete(ended.values().next().value as string);
  const signal = proc.signalCode ? String(proc.signalCode) : null;
  stream.result({ exit_code: signal ? null : code, signal });
}

export function writeShell(id: string, input: string): { bytes: number } {
  const sh = lookup(id);
  sh.term.write(input);
  return { bytes: Buffer.byteLength(input) };
}

export function signalShell(id: string, signal: NodeJS.Signals): { pgid: number } {
  const sh = lookup(id);
  const tpgid = Number(procStat(sh.proc.pid)?.[5]);
  const pgid = Number.isInteger(tpgid) && tpgid > 0 ? tpgid : sh.proc.pid;
  try {
    process.kill(-pgid, signal);
  } catch {
    process.kill(-sh.proc.pid, signal);
  }
  return { pgid };
}

export function resizeShell(id: string, cols: number, rows: number): { cols: number; rows: number } {
  lookup(id).term.resize(cols, rows);
  return { cols, rows };
}

export async function closeShell(id: string): Promise<{ closed: true }> {
  const sh = lookup(id);
  const sid = sh.proc.pid;
  for (const pid of sessionPids(sid)) {
    try {
      process.kill(pid, "SIGHUP");
    } catch {}
  }
  const gone = await Promise.race([
    sh.proc.exited.then(() => true),
    Bun.sleep(CLOSE_GRACE_MS).then(() => false),
  ]);
  if (!gone || sessionPids(sid).length > 0) killSession(sid);
  await sh.proc.exited;
  return { closed: true };
}
