/**
 * exec in the guest: one process group per command, streamed output with per-stream caps,
 * a timeout that kills the whole group and still returns what was produced.
 */

import { stat } from "node:fs/promises";
import type { ServerStream } from "../src/protocol/connection.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { Channel } from "../src/protocol/frame.ts";
import type { Request } from "../src/protocol/messages.ts";
import { resolveInRoot } from "./paths.ts";
import { secretEnv } from "./secrets.ts";
import { spawnUnprotected } from "./system.ts";

type ExecRequest = Extract<Request, { op: "exec" }>;

export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;
/** After the main process exits, how long background children may keep the pipes open. */
const DRAIN_GRACE_MS = 300;

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
};
const SIGNAL_NAMES = Object.fromEntries(Object.entries(SIGNALS).map(([k, v]) => [v, k]));

/** Process groups still running, so the agent can take them down when it is told to go. */
const liveGroups = new Set<number>();
function pruneGroups(): void {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 0);
    } catch {
      liveGroups.delete(pid);
    }
  }
}
export function killAllGroups(): void {
  for (const pid of liveGroups) killGroup(pid, 9);
}

/**
 * Running execs by process group: `expire` ends one as a timeout (its own timer, or the
 * host's exec.kill: under TCG the guest clock can lag the host's badly, and the host's
 * deadline is the one the caller sees, so a host kill is a timeout too).
 */
const running = new Map<number, { expire: () => void; timed: boolean }>();

/** exec.kill: time is up for this exec (SIGKILL to its group); false if it is not running. */
export function killExecGroup(pid: number): boolean {
  const r = running.get(pid);
  if (!r) return false;
  r.expire();
  return true;
}

/**
 * The task guard's policy (guest/system.ts). A running exec with a timeout is frozen
 * (SIGSTOP): it stops multiplying and its timeout still ends it as a timeout (124). Any
 * other group is killed. A frozen group is left alone. The command's stderr says why.
 */
const frozen = new Set<number>();
const guardNotes = new Map<number, string>();
export const execGuardPolicy = {
  isFrozen: (pgid: number) => frozen.has(pgid),
  signalFor(pgid: number, why: string): "SIGSTOP" | "SIGKILL" {
    const freeze = running.get(pgid)?.timed === true;
    if (freeze) frozen.add(pgid);
    if (liveGroups.has(pgid) && !guardNotes.has(pgid)) {
      const what = freeze
        ? "froze the command's processes until its timeout"
        : "killed the command's processes";
      guardNotes.set(pgid, `${what}: ${why}`);
    }
    return freeze ? "SIGSTOP" : "SIGKILL";
  },
};

export interface ExecContext {
  root: string;
  baseEnv: Record<string, string>;
}

function killGroup(pid: number, signal: number): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {}
  }
}

export async function runExec(ctx: ExecContext, req: ExecRequest, stream: ServerStream): Promise<void> {
  const started = performance.now();
  const secrets = secretEnv(req.secret_env); // an undeclared name fails before anything runs
  const cwd = req.cwd ? await resolveInRoot(ctx.root, req.cwd, { followFinalSymlink: true }) : ctx.root;
  // A missing cwd must not look like a missing command (spawn reports both as ENOENT).
  const cwdStat = await stat(cwd).catch(() => null);
  if (!cwdStat)
    throw new PyroError("FILE_NOT_FOUND", `working directory ${req.cwd ?? "/workspace"} does not exist`);
  if (!cwdStat.isDirectory())
    throw new PyroError("NOT_A_DIRECTORY", `working directory ${req.cwd} is not a directory`);
  if (stream.clientGone) return; // the client left while we resolved: start nothing
  const argv = req.argv ?? ["/bin/sh", "-c", req.command as string];
  const cap = req.max_output_bytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    // Commands never inherit the agent's OOM immunity (guest/system.ts).
    proc = spawnUnprotected(() =>
      Bun.spawn(argv, {
        cwd,
        env: { ...ctx.baseEnv, ...(req.env ?? {}), ...secrets },
        stdin: req.stdin ? "pipe" : "ignore",
        stdout: "pipe",
        stderr: "pipe",
        // A new session/process group so a timeout can kill everything the command started.
        detached: true,
      }),
    );
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // Like a shell: not executable is 126, not found is 127 — results, not protocol errors.
    const shellCode = e.code === "EACCES" ? 126 : e.code === "ENOENT" ? 127 : null;
    if (shellCode !== null) {
      const why = shellCode === 126 ? "permission denied" : "command not found";
      const msg = new TextEncoder().encode(`${argv[0]}: ${why}\n`);
      stream.sendData(msg, Channel.STDERR);
      stream.result({
        exit_code: shellCode,
        signal: null,
        timed_out: false,
        stdout_bytes: 0,
        stderr_bytes: msg.byteLength,
        stdout_truncated: false,
        stderr_truncated: false,
        duration_ms: Math.round(performance.now() - started),
      });
      return;
    }
    throw new PyroError("INVALID_INPUT", `cannot start ${argv[0]}: ${e.message}`);
  }
  liveGroups.add(proc.pid);
  stream.sendJson({ type: "started", pid: proc.pid });

  let timedOut = false;
  const expire = () => {
    timedOut = true;
    killGroup(proc.pid, 9);
  };
  running.set(proc.pid, { expire, timed: req.timeout_ms !== undefined });
  const timer = req.timeout_ms ? setTimeout(expire, req.timeout_ms) : null;
  stream.onControl((m) => {
    if (m?.op === "signal" && typeof m.signal === "string" && SIGNALS[m.signal])
      killGroup(proc.pid, SIGNALS[m.signal] as number);
  });
  // A client that disconnects does not want its command to keep running.
  stream.onAbandon(() => killGroup(proc.pid, 9));
  if (stream.clientGone) killGroup(proc.pid, 9);

  if (req.stdin && proc.stdin && typeof proc.stdin !== "number") {
    const sink = proc.stdin;
    (async () => {
      try {
        for await (const part of stream.input) {
          sink.write(part);
          await sink.flush();
        }
      } catch {}
      try {
        await sink.end();
      } catch {}
    })();
  }

  const counts = { stdout: 0, stderr: 0, stdoutTrunc: false, stderrTrunc: false };
  const pump = async (src: ReadableStream<Uint8Array>, which: "stdout" | "stderr") => {
    const channel = which === "stdout" ? Channel.STDOUT : Channel.STDERR;
    for await (const chunk of src) {
      const used = which === "stdout" ? counts.stdout : counts.stderr;
      const room = cap - used;
      if (room <= 0) {
        if (which === "stdout") counts.stdoutTrunc = true;
        else counts.stderrTrunc = true;
        continue; // keep draining so the writer never blocks on a full pipe
      }
      const part = chunk.byteLength > room ? chunk.subarray(0, room) : chunk;
      if (part.byteLength < chunk.byteLength) {
        if (which === "stdout") counts.stdoutTrunc = true;
        else counts.stderrTrunc = true;
      }
      if (which === "stdout") counts.stdout += part.byteLength;
      else counts.stderr += part.byteLength;
      stream.sendData(part, channel);
    }
  };
  const pumps = Promise.all([
    pump(proc.stdout as ReadableStream<Uint8Array>, "stdout"),
    pump(proc.stderr as ReadableStream<Uint8Array>, "stderr"),
  ]);
  const status = await proc.exited;
  running.delete(proc.pid);
  // The group stays tracked: background children may outlive the command's main process.
  pruneGroups();
  // Background children may hold the pipes; give them a moment, then answer anyway.
  await Promise.race([pumps, Bun.sleep(DRAIN_GRACE_MS)]);
  if (timer) clearTimeout(timer);
  // Nothing of a command stays frozen by the task guard once it has answered.
  if (timedOut || frozen.delete(proc.pid)) killGroup(proc.pid, 9);

  const guardNote = guardNotes.get(proc.pid);
  guardNotes.delete(proc.pid);
  if (guardNote) {
    const note = new TextEncoder().encode(`pyro-agent: ${guardNote}\n`);
    counts.stderr += note.byteLength;
    stream.sendData(note, Channel.STDERR);
  }
  const signalCode = proc.signalCode ? String(proc.signalCode) : null;
  let exitCode = status;
  if (timedOut) exitCode = 124;
  else if (signalCode) exitCode = 128 + (SIGNALS[signalCode] ?? 0);
  stream.result({
    exit_code: exitCode,
    signal: signalCode ?? (timedOut ? SIGNAL_NAMES[9] : null),
    timed_out: timedOut,
    stdout_bytes: counts.stdout,
    stderr_bytes: counts.stderr,
    stdout_truncated: counts.stdoutTrunc,
    stderr_truncated: counts.stderrTrunc,
    duration_ms: Math.round(performance.now() - started),
  });
}
