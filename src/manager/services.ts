/**
 * Services as clients see them. The workspace's supervisor runs them (src/supervisor/services.ts)
 * and keeps everything about them on the host, outside /workspace, which clients read directly:
 *
 *   workspaces/<id>/logs/services/<name>/service.json   the record (protocol ServiceRecord), atomic
 *                                        /stdout, /stderr   the current log files, append-only
 *                                        /stdout.1, /stderr.1   the previous ones (rotation)
 *
 * Invariants:
 * - Log offsets are absolute bytes since the service was started: the current file starts at
 *   `<stream>_base`, its predecessor (<stream>.1) ends there. A file is rotated when it would pass
 *   SERVICE_LOG_ROTATE_BYTES, so at most twice that is kept per stream; older bytes are dropped.
 * - A record says starting or ready only while the supervisor that wrote it is the workspace's
 *   live supervisor; otherwise the service is reported `stopped` (it ended with its machine).
 * - Start and stop go through the supervisor; list, status, logs and counts only read files, so
 *   they also work on a stopped workspace. Reset removes logs/services (services are history).
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ResultOf } from "../protocol/call.ts";
import { PyroError } from "../protocol/errors.ts";
import { SERVICE_NAME_RE } from "../protocol/messages.ts";
import { callWorkspace } from "./client.ts";
import type { Ctx } from "./context.ts";
import { logsDir } from "./paths.ts";
import type { WorkspaceRecord } from "./record.ts";
import { resolveWorkspace } from "./store.ts";

export type ServiceRecord = ResultOf<"sup.service.start">;
export type ServiceState = ServiceRecord["state"];
export type ServiceStream = "stdout" | "stderr";
type Readiness = NonNullable<ServiceRecord["readiness"]>;

export const SERVICE_READY_TIMEOUT_SECONDS = 30;
export const SERVICE_READY_INTERVAL_MS = 500;
export const SERVICE_STOP_GRACE_SECONDS = 5;
/** A log file is rotated to <stream>.1 when it would pass this many bytes. */
export const SERVICE_LOG_ROTATE_BYTES = 8 * 1024 * 1024;
export const SERVICE_TAIL_LINES = 200;
export const SERVICE_LOGS_READ_BYTES = 65536;
/** The most a tail returns per stream (its last bytes, on a line start where possible). */
export const SERVICE_TAIL_MAX_BYTES = 1024 * 1024;
export const MAX_SERVICES = 16;
/** Restart backoff: 1 s, doubling, at most 30 s; 10 failures in a row make the service `failed`. */
export const RESTART_BACKOFF_MS = { first: 1000, max: 30_000 } as const;
export const RESTART_LIMIT = 10;
/** A run that stayed up this long resets the backoff (the next failure waits 1 s again). */
export const RESTART_HEALTHY_MS = 60_000;

export const servicesDir = (home: string, id: string) => join(logsDir(home, id), "services");
export const serviceDir = (home: string, id: string, name: string) => join(servicesDir(home, id), name);
export const serviceRecordPath = (home: string, id: string, name: string) =>
  join(serviceDir(home, id, name), "service.json");
export const serviceLogPath = (home: string, id: string, name: string, stream: ServiceStream, old = false) =>
  join(serviceDir(home, id, name), old ? `${stream}.1` : stream);

export function readServiceRecord(home: string, id: string, name: string): ServiceRecord | null {
  try {
    return JSON.parse(readFileSync(serviceRecordPath(home, id, name), "utf8")) as ServiceRecord;
  } catch {
    return null;
  }
}

/** Names of the services recorded in a workspace, oldest first. */
export function serviceNames(home: string, id: string): string[] {
  const dir = servicesDir(home, id);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => SERVICE_NAME_RE.test(n))
    .map((n) => readServiceRecord(home, id, n))
    .filter((s): s is ServiceRecord => s !== null)
    .sort((a, b) => a.started_at.localeCompare(b.started_at))
    .map((s) => s.service_name);
}

const size = (path: string) => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

/** Bytes written to a stream so far (the offset where reading reaches the end). */
function streamEnd(home: string, id: string, s: ServiceRecord, stream: ServiceStream): number {
  return s[`${stream}_base`] + size(serviceLogPath(home, id, s.service_name, stream));
}

/** The record as it stands now: a running state of a supervisor that is gone reads `stopped`. */
function current(r: WorkspaceRecord, s: ServiceRecord): ServiceRecord {
  const live = r.state === "started" && r.supervisor_pid === s.supervisor_pid;
  if (live || (s.state !== "starting" && s.state !== "ready")) return s;
  return {
    ...s,
    state: "stopped",
    pid: null,
    published_ports: [],
    end_reason: `the workspace's machine ended (${r.stop_reason ?? "its supervisor is gone"})`,
  };
}

export interface ServiceView {
  workspace_id: string;
  service_name: string;
  state: ServiceState;
  command: string | null;
  argv: string[] | null;
  cwd: string | null;
  readiness: Readiness | null;
  ready_timeout_seconds: number;
  ready_interval_ms: number;
  restart: "no" | "on-failure";
  published_ports: ServiceRecord["published_ports"];
  started_at: string;
  ready_at: string | null;
  ended_at: string | null;
  exit_code: number | null;
  signal: string | null;
  restart_count: number;
  end_reason: string | null;
  stdout_bytes: number;
  stderr_bytes: number;
}

export function serviceView(home: string, r: WorkspaceRecord, rec: ServiceRecord): ServiceView {
  const s = current(r, rec);
  return {
    workspace_id: r.workspace_id,
    service_name: s.service_name,
    state: s.state,
    command: s.command,
    argv: s.argv,
    cwd: s.cwd,
    readiness: s.readiness,
    ready_timeout_seconds: s.ready_timeout_ms / 1000,
    ready_interval_ms: s.ready_interval_ms,
    restart: s.restart,
    published_ports: s.published_ports,
    started_at: s.started_at,
    ready_at: s.ready_at,
    ended_at: s.ended_at,
    exit_code: s.exit_code,
    signal: s.signal,
    restart_count: s.restart_count,
    end_reason: s.end_reason,
    stdout_bytes: streamEnd(home, r.workspace_id, s, "stdout"),
    stderr_bytes: streamEnd(home, r.workspace_id, s, "stderr"),
  };
}

function notFound(r: WorkspaceRecord, name: string): PyroError {
  const ref = r.name ?? r.workspace_id;
  return new PyroError("SERVICE_NOT_FOUND", `workspace ${ref} has no service ${name}`, {
    details: { workspace_id: r.workspace_id, service_name: name },
    hint: `list them with \`pyro workspace service list ${ref}\``,
  });
}

function lookup(home: string, r: WorkspaceRecord, name: string): ServiceRecord {
  const rec = SERVICE_NAME_RE.test(name) ? readServiceRecord(home, r.workspace_id, name) : null;
  if (!rec) throw notFound(r, name);
  return rec;
}

/** Every service of a workspace (all states), oldest first. */
export function workspaceServices(home: string, r: WorkspaceRecord): ServiceView[] {
  return serviceNames(home, r.workspace_id)
    .map((n) => readServiceRecord(home, r.workspace_id, n))
    .filter((s): s is ServiceRecord => s !== null)
    .map((s) => serviceView(home, r, s));
}

/** Services starting or ready (what workspace status and list count). */
export function countServices(home: string, r: WorkspaceRecord): number {
  return workspaceServices(home, r).filter((s) => s.state === "starting" || s.state === "ready").length;
}

export type PublishSpec = { guest_port: number; host_port?: number };

export interface ServiceStartInput {
  service_name: string;
  command: string | string[];
  cwd?: string;
  readiness?: Readiness;
  ready_timeout_seconds?: number;
  ready_interval_ms?: number;
  restart?: "no" | "on-failure";
  published_ports?: PublishSpec[];
  stop_grace_seconds?: number;
  env?: Record<string, string>;
  secret_env?: Record<string, string>;
}

/** "[HOST:]GUEST" (CLI --publish) as a port spec. */
export function parsePublish(spec: string): PublishSpec {
  const m = /^(?:(\d{1,5}):)?(\d{1,5})$/.exec(spec.trim());
  const port = (s: string | undefined) => (s === undefined ? undefined : Number(s));
  const host = port(m?.[1]);
  const guest = port(m?.[2]);
  const ok = (p: number | undefined) => p === undefined || (p >= 1 && p <= 65535);
  if (!m || guest === undefined || !ok(guest) || !ok(host))
    throw new PyroError("INVALID_INPUT", `--publish takes [HOST:]GUEST ports 1-65535 (got "${spec}")`);
  return host === undefined ? { guest_port: guest } : { guest_port: guest, host_port: host };
}

export async function startService(ctx: Ctx, ref: string, input: ServiceStartInput): Promise<ServiceView> {
  const r = await resolveWorkspace(ctx.home, ref);
  const publish = input.published_ports ?? [];
  if (publish.length > 0 && r.network_policy !== "egress+published-ports") {
    throw new PyroError(
      "PUBLISH_NOT_ALLOWED",
      `workspace ${r.name ?? r.workspace_id} has network policy ${r.network_policy}: publishing ports needs egress+published-ports`,
      { hint: "create the workspace with --network-policy egress+published-ports" },
    );
  }
  const guestPorts = publish.map((p) => p.guest_port);
  if (new Set(guestPorts).size !== guestPorts.length)
    throw new PyroError("INVALID_INPUT", "a guest port is published twice");
  const hostPorts = publish.flatMap((p) => (p.host_port === undefined ? [] : [p.host_port]));
  if (new Set(hostPorts).size !== hostPorts.length)
    throw new PyroError("INVALID_INPUT", "a host port is asked for twice");
  const cmd = typeof input.command === "string" ? { command: input.command } : { argv: input.command };
  const rec = await callWorkspace(ctx.home, r, {
    op: "sup.service.start",
    service: {
      service_name: input.service_name,
      ...cmd,
      ...(input.cwd !== undefined ? { cwd: input.cwd } : {}),
      ...(input.env !== undefined ? { env: input.env } : {}),
      ...(input.secret_env !== undefined ? { secret_env: input.secret_env } : {}),
      ...(input.readiness ? { readiness: input.readiness } : {}),
      ready_timeout_ms: Math.round((input.ready_timeout_seconds ?? SERVICE_READY_TIMEOUT_SECONDS) * 1000),
      ready_interval_ms: input.ready_interval_ms ?? SERVICE_READY_INTERVAL_MS,
      stop_grace_ms: Math.round((input.stop_grace_seconds ?? SERVICE_STOP_GRACE_SECONDS) * 1000),
    },
    restart: input.restart ?? "no",
    publish: publish.map((p) => ({ guest_port: p.guest_port, host_port: p.host_port ?? null })),
  });
  return serviceView(ctx.home, r, rec);
}

export async function stopService(
  ctx: Ctx,
  ref: string,
  name: string,
  graceSeconds = SERVICE_STOP_GRACE_SECONDS,
): Promise<ServiceView> {
  const r = await resolveWorkspace(ctx.home, ref);
  lookup(ctx.home, r, name);
  const rec = await callWorkspace(ctx.home, r, {
    op: "sup.service.stop",
    service_name: name,
    grace_ms: Math.round(graceSeconds * 1000),
  });
  return serviceView(ctx.home, r, rec);
}

export async function serviceStatus(ctx: Ctx, ref: string, name: string): Promise<ServiceView> {
  const r = await resolveWorkspace(ctx.home, ref);
  return serviceView(ctx.home, r, lookup(ctx.home, r, name));
}

export async function listServices(ctx: Ctx, ref: string) {
  const r = await resolveWorkspace(ctx.home, ref);
  const services = workspaceServices(ctx.home, r);
  return { workspace_id: r.workspace_id, services, count: services.length };
}

/** Bytes [from, to) of a stream, from its .1 file and current file as they cover it. */
function readRange(
  home: string,
  id: string,
  s: ServiceRecord,
  stream: ServiceStream,
  from: number,
  to: number,
) {
  const base = s[`${stream}_base`];
  const oldPath = serviceLogPath(home, id, s.service_name, stream, true);
  const oldStart = base - size(oldPath);
  const parts: Buffer[] = [];
  const readFile = (path: string, fileStart: number, a: number, b: number) => {
    if (b <= a) return;
    const buf = Buffer.alloc(b - a);
    const fd = openSync(path, "r");
    try {
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, a - fileStart + got);
        if (n <= 0) break;
        got += n;
      }
      parts.push(buf.subarray(0, got));
    } finally {
      closeSync(fd);
    }
  };
  const start = Math.max(from, oldStart);
  if (start < base) readFile(oldPath, oldStart, start, Math.min(to, base));
  readFile(serviceLogPath(home, id, s.service_name, stream), base, Math.max(start, base), to);
  return { bytes: Buffer.concat(parts), start };
}

function tailOf(home: string, id: string, s: ServiceRecord, stream: ServiceStream, lines: number) {
  const end = streamEnd(home, id, s, stream);
  if (lines === 0) return { text: "", start: end, end };
  const { bytes, start } = readRange(home, id, s, stream, Math.max(0, end - SERVICE_TAIL_MAX_BYTES), end);
  const text = bytes.toString("utf8");
  const all = text.split("\n");
  if (all[all.length - 1] === "") all.pop();
  const kept = all.slice(-lines);
  const out = kept.length ? `${kept.join("\n")}${text.endsWith("\n") ? "\n" : ""}` : "";
  return { text: out, start: end - Buffer.byteLength(out), end, dropped: start > 0 && kept.length < lines };
}

/** The last `lines` lines of both streams, as text (for errors and the logs tail). */
export function serviceTail(home: string, id: string, s: ServiceRecord, lines: number) {
  return {
    stdout: tailOf(home, id, s, "stdout", lines).text,
    stderr: tailOf(home, id, s, "stderr", lines).text,
  };
}

export interface ServiceLogsInput {
  tail_lines?: number;
  stream?: ServiceStream;
  offset?: number;
  max_bytes?: number;
}

export async function serviceLogs(ctx: Ctx, ref: string, name: string, input: ServiceLogsInput) {
  const r = await resolveWorkspace(ctx.home, ref);
  const rec = lookup(ctx.home, r, name);
  const view = serviceView(ctx.home, r, rec);
  const base = { workspace_id: r.workspace_id, service_name: name, state: view.state };
  if (input.offset === undefined) {
    if (input.stream !== undefined || input.max_bytes !== undefined)
      throw new PyroError("INVALID_INPUT", "stream and max_bytes go with offset (a read by offset)");
    const lines = input.tail_lines ?? SERVICE_TAIL_LINES;
    const out = tailOf(ctx.home, r.workspace_id, rec, "stdout", lines);
    const err = tailOf(ctx.home, r.workspace_id, rec, "stderr", lines);
    return {
      ...base,
      stdout: out.text,
      stderr: err.text,
      stdout_bytes: out.end,
      stderr_bytes: err.end,
      tail_lines: lines,
      stream: null,
      offset: null,
      next_offset: null,
      truncated: false,
    };
  }
  if (input.tail_lines !== undefined)
    throw new PyroError("INVALID_INPUT", "give tail_lines or offset, not both");
  const stream = input.stream ?? "stdout";
  const end = streamEnd(ctx.home, r.workspace_id, rec, stream);
  if (input.offset > end)
    throw new PyroError(
      "OFFSET_OUT_OF_RANGE",
      `offset ${input.offset} is past the ${end} bytes of ${stream}`,
      {
        details: { offset: input.offset, size_bytes: end },
      },
    );
  // bytes before the oldest kept one were dropped by rotation: the window starts there
  const kept = rec[`${stream}_base`] - size(serviceLogPath(ctx.home, r.workspace_id, name, stream, true));
  const from = Math.max(input.offset, kept);
  const to = Math.min(end, from + (input.max_bytes ?? SERVICE_LOGS_READ_BYTES));
  const { bytes, start } = readRange(ctx.home, r.workspace_id, rec, stream, from, to);
  const text = bytes.toString("utf8");
  return {
    ...base,
    stdout: stream === "stdout" ? text : "",
    stderr: stream === "stderr" ? text : "",
    stdout_bytes: streamEnd(ctx.home, r.workspace_id, rec, "stdout"),
    stderr_bytes: streamEnd(ctx.home, r.workspace_id, rec, "stderr"),
    tail_lines: null,
    stream,
    offset: start,
    next_offset: start + bytes.length,
    truncated: start > input.offset,
  };
}
