/**
 * Detached execs, as clients see them: started through the workspace's supervisor (which
 * owns the agent stream and spools the output, src/supervisor/detached.ts), then read,
 * waited for and listed straight from the files the supervisor writes on the host:
 *
 *   workspaces/<id>/logs/exec/<exec_id>/start.json   what runs (written before it starts)
 *                                      /stdout, /stderr   the spooled bytes, append-only
 *                                      /end.json     how it ended (written once, atomically)
 *
 * Invariants:
 * - The spool is outside /workspace (diff, export and snapshots never see it) and is kept
 *   after every client is gone, across stop/start, until reset or delete.
 * - A byte offset names the same byte forever: spools are only appended to.
 * - An exec without end.json is running only while the supervisor that started it
 *   (start.json's supervisor_pid) is the workspace's live supervisor; otherwise it is
 *   reported `lost` (the command died with its machine). The next supervisor writes that
 *   end for good when it starts (src/supervisor/detached.ts).
 * - exec_read data decodes (with its `encoding`) to exactly bytes [offset, next_offset).
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import type { RequestOf } from "../protocol/call.ts";
import { PyroError } from "../protocol/errors.ts";
import { writeFileAtomic } from "./atomic.ts";
import { callWorkspace } from "./client.ts";
import type { Ctx } from "./context.ts";
import { type ExecInput, execRequest } from "./exec.ts";
import { randomHex } from "./ids.ts";
import { logsDir } from "./paths.ts";
import type { WorkspaceRecord } from "./record.ts";
import { resolveWorkspace } from "./store.ts";

export type ExecStream = "stdout" | "stderr";
export type DetachedState = "running" | "exited" | "lost";

/** Spool cap per stream when the start names no max_output_bytes (host disk, not a response). */
export const DETACHED_MAX_OUTPUT_BYTES = 1024 * 1024 * 1024;
export const EXEC_READ_DEFAULT_BYTES = 65536;
export const EXEC_WAIT_DEFAULT_SECONDS = 30;

const EXEC_ID_RE = /^ex_[0-9a-f]{12}$/;
export const newExecId = (): string => `ex_${randomHex(6)}`;
export const execsDir = (home: string, id: string) => join(logsDir(home, id), "exec");
export const execDir = (home: string, id: string, execId: string) => join(execsDir(home, id), execId);
export const spoolPath = (home: string, id: string, execId: string, stream: ExecStream) =>
  join(execDir(home, id, execId), stream);

export interface ExecStart {
  exec_id: string;
  command: string | null;
  argv: string[] | null;
  cwd: string | null;
  idempotency_key: string | null;
  started_at: string;
  /** the supervisor that owns the command: it is running only while this one lives */
  supervisor_pid: number;
}

export interface ExecEnd {
  state: "exited" | "lost";
  ended_at: string | null;
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  duration_ms: number | null;
  stdout_truncated: boolean;
  stderr_truncated: boolean;
  end_reason: string | null;
}

/** What every detached-exec operation returns about one exec (outputs.ts detachedExec). */
export interface DetachedExec extends Omit<ExecStart, "supervisor_pid">, Omit<ExecEnd, "state"> {
  workspace_id: string;
  state: DetachedState;
  /** bytes spooled so far: the offset where reading reaches the current end */
  stdout_bytes: number;
  stderr_bytes: number;
  execution_mode: "guest" | "host_compat";
  backend: WorkspaceRecord["backend"];
  accelerator: WorkspaceRecord["accelerator"];
}

function readJson<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return null;
  }
}

export const readStart = (home: string, id: string, execId: string) =>
  readJson<ExecStart>(join(execDir(home, id, execId), "start.json"));
export const readEnd = (home: string, id: string, execId: string) =>
  readJson<ExecEnd>(join(execDir(home, id, execId), "end.json"));
export const writeStart = (home: string, id: string, start: ExecStart) =>
  writeFileAtomic(join(execDir(home, id, start.exec_id), "start.json"), JSON.stringify(start));
export const writeEnd = (home: string, id: string, execId: string, end: ExecEnd) =>
  writeFileAtomic(join(execDir(home, id, execId), "end.json"), JSON.stringify(end));

/** The end of a command whose exit nobody saw: its machine (or supervisor) went first. */
export function lostEnd(reason: string, startedAt: string | null): ExecEnd {
  const now = new Date();
  return {
    state: "lost",
    ended_at: startedAt ? now.toISOString() : null,
    exit_code: null,
    signal: null,
    timed_out: false,
    duration_ms: startedAt ? Math.max(0, now.getTime() - Date.parse(startedAt)) : null,
    stdout_truncated: false,
    stderr_truncated: false,
    end_reason: reason,
  };
}

/** A running exec's end fields (truncation is known once it ends). */
const NOT_ENDED: Omit<ExecEnd, "state"> = {
  ended_at: null,
  exit_code: null,
  signal: null,
  timed_out: false,
  duration_ms: null,
  stdout_truncated: false,
  stderr_truncated: false,
  end_reason: null,
};

/** Exec ids with a start record, oldest first. */
export function listExecIds(home: string, id: string): string[] {
  const dir = execsDir(home, id);
  if (!existsSync(dir)) return [];
  const starts = readdirSync(dir)
    .filter((n) => EXEC_ID_RE.test(n))
    .map((n) => readStart(home, id, n))
    .filter((s): s is ExecStart => s !== null);
  return starts.sort((a, b) => a.started_at.localeCompare(b.started_at)).map((s) => s.exec_id);
}

function notFound(execId: string, r: WorkspaceRecord): PyroError {
  const ref = r.name ?? r.workspace_id;
  return new PyroError("EXEC_NOT_FOUND", `workspace ${ref} has no detached exec ${execId}`, {
    hint: `list them with \`pyro workspace exec-list ${ref}\``,
    details: { workspace_id: r.workspace_id, exec_id: execId },
  });
}

const size = (path: string) => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

/** One exec as it stands now (see the header for how `running` is decided). */
export function execView(home: string, r: WorkspaceRecord, execId: string): DetachedExec {
  const start = EXEC_ID_RE.test(execId) ? readStart(home, r.workspace_id, execId) : null;
  if (!start) throw notFound(execId, r);
  let end = readEnd(home, r.workspace_id, execId);
  // paused: a running exec was kept by the pause (src/supervisor/pause.ts), one that was not
  // has its end written; a resume's supervisor adopts it and takes it over in start.json
  const owned = (r.state === "started" && r.supervisor_pid === start.supervisor_pid) || r.state === "paused";
  if (!end && !owned)
    end = lostEnd("the workspace's supervisor ended before the command did (it died with its machine)", null);
  const { supervisor_pid: _pid, ...what } = start;
  const { state, ...how } = end ?? { state: "running" as const, ...NOT_ENDED };
  return {
    workspace_id: r.workspace_id,
    ...what,
    state,
    ...how,
    stdout_bytes: size(spoolPath(home, r.workspace_id, execId, "stdout")),
    stderr_bytes: size(spoolPath(home, r.workspace_id, execId, "stderr")),
    execution_mode: r.backend === "host" ? "host_compat" : "guest",
    backend: r.backend,
    accelerator: r.accelerator,
  };
}

export interface DetachedInput extends ExecInput {
  idempotency_key?: string;
}

/** Start `input` detached in a started workspace; returns the exec (running, or already ended). */
export async function startDetached(
  ctx: Ctx,
  ref: string,
  input: DetachedInput,
): Promise<DetachedExec & { reused: boolean }> {
  const r = await resolveWorkspace(ctx.home, ref);
  // No default timeout: a detached command runs until it ends, is killed, or the workspace stops.
  const { timeout_ms, ...base } = execRequest(input);
  const exec: RequestOf<"exec"> = {
    ...base,
    max_output_bytes: input.max_output_bytes ?? DETACHED_MAX_OUTPUT_BYTES,
    ...(input.timeout_seconds !== undefined ? { timeout_ms } : {}),
  };
  const started = await callWorkspace(ctx.home, r, {
    op: "sup.exec.start",
    exec,
    ...(input.idempotency_key !== undefined ? { idempotency_key: input.idempotency_key } : {}),
  });
  return { ...execView(ctx.home, r, started.exec_id), reused: started.reused };
}

export async function listDetached(
  ctx: Ctx,
  ref: string,
): Promise<{ workspace_id: string; execs: DetachedExec[]; count: number }> {
  const r = await resolveWorkspace(ctx.home, ref);
  const execs = listExecIds(ctx.home, r.workspace_id).map((x) => execView(ctx.home, r, x));
  return { workspace_id: r.workspace_id, execs, count: execs.length };
}

/** The exec once it is no longer running, or as it stands when `timeoutSeconds` run out. */
export async function waitDetached(
  ctx: Ctx,
  ref: string,
  execId: string,
  timeoutSeconds = EXEC_WAIT_DEFAULT_SECONDS,
): Promise<DetachedExec> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const x = execView(ctx.home, await resolveWorkspace(ctx.home, ref), execId);
    const left = deadline - Date.now();
    if (x.state !== "running" || left <= 0) return x;
    await Bun.sleep(Math.min(100, left));
  }
}

const KILL_SIGNALS = {
  INT: "SIGINT",
  TERM: "SIGTERM",
  KILL: "SIGKILL",
  HUP: "SIGHUP",
  QUIT: "SIGQUIT",
} as const;
export type KillSignal = keyof typeof KILL_SIGNALS;
export const KILL_SIGNAL_NAMES = Object.keys(KILL_SIGNALS) as KillSignal[];

/** Signal a running exec's process group, then wait up to 5 s for it to end. */
export async function killDetached(
  ctx: Ctx,
  ref: string,
  execId: string,
  signal: KillSignal = "KILL",
): Promise<DetachedExec & { signalled: boolean }> {
  const r = await resolveWorkspace(ctx.home, ref);
  const before = execView(ctx.home, r, execId);
  if (before.state !== "running") return { ...before, signalled: false };
  const { killed } = await callWorkspace(ctx.home, r, {
    op: "sup.exec.kill",
    exec_id: execId,
    signal: KILL_SIGNALS[signal],
  });
  return { ...(await waitDetached(ctx, ref, execId, 5)), signalled: killed };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * `bytes` as UTF-8 text if they are, allowing a character cut at the end when `more` follows
 * (its bytes are left for the next read; never all of the window).
 */
function asText(bytes: Uint8Array, more: boolean): { text: string; used: number } | null {
  if (bytes.includes(0)) return null;
  for (let trim = 0; trim <= (more ? 3 : 0) && (trim === 0 || trim < bytes.length); trim++) {
    try {
      return { text: utf8.decode(bytes.subarray(0, bytes.length - trim)), used: bytes.length - trim };
    } catch {}
  }
  return null;
}

export interface ExecReadResult {
  workspace_id: string;
  exec_id: string;
  stream: ExecStream;
  data: string;
  encoding: "utf8" | "base64";
  offset: number;
  next_offset: number;
  eof: boolean;
  size_bytes: number;
  state: DetachedState;
}

/** Bytes [offset, offset + maxBytes) of one stream's spool (see the header for the encoding rule). */
export async function readDetached(
  ctx: Ctx,
  ref: string,
  execId: string,
  stream: ExecStream,
  offset = 0,
  maxBytes = EXEC_READ_DEFAULT_BYTES,
): Promise<ExecReadResult> {
  const r = await resolveWorkspace(ctx.home, ref);
  const x = execView(ctx.home, r, execId);
  const total = stream === "stdout" ? x.stdout_bytes : x.stderr_bytes;
  if (offset > total)
    throw new PyroError(
      "OFFSET_OUT_OF_RANGE",
      `offset ${offset} is past the ${total} bytes of ${stream} spooled so far`,
      { details: { offset, size_bytes: total, state: x.state } },
    );
  const want = Math.min(maxBytes, total - offset);
  const bytes = new Uint8Array(want);
  let got = 0;
  if (want > 0) {
    const fd = openSync(spoolPath(ctx.home, r.workspace_id, execId, stream), "r");
    try {
      while (got < want) {
        const n = readSync(fd, bytes, got, want - got, offset + got);
        if (n <= 0) break;
        got += n;
      }
    } finally {
      closeSync(fd);
    }
  }
  const window = bytes.subarray(0, got);
  const more = offset + got < total || x.state === "running";
  const text = asText(window, more);
  const next = offset + (text ? text.used : got);
  return {
    workspace_id: r.workspace_id,
    exec_id: execId,
    stream,
    data: text ? text.text : Buffer.from(window.buffer, window.byteOffset, got).toString("base64"),
    encoding: text ? "utf8" : "base64",
    offset,
    next_offset: next,
    eof: next === total && x.state !== "running",
    size_bytes: total,
    state: x.state,
  };
}
