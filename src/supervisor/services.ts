/**
 * Services, the supervisor's side (`sup.service.start`, `sup.service.stop`): the supervisor runs
 * each service on the agent itself (service.start, guest/service.ts), so a service outlives
 * every client; it keeps the service's record and logs on the host (file layout and the
 * client side: src/manager/services.ts), restarts it when asked, and publishes its ports.
 *
 * Invariants:
 * - service.json is rewritten (atomically) on every change of state; log bytes are appended
 *   synchronously as data frames arrive and rotated at SERVICE_LOG_ROTATE_BYTES per stream.
 * - Secret values are redacted before anything is written or answered: the command, argv and
 *   cwd in the record (the run keeps them as given), errors, and each log stream through its
 *   own stream redactor.
 * - `start` answers once the first run is ready (its ports published), or fails: a run that
 *   never started (bad cwd, agent error) leaves nothing; one that started but was not ready
 *   in time, or exited first, is left recorded `failed` with its process group stopped, and
 *   the error is SERVICE_NOT_READY carrying the log tail.
 * - Published ports exist only while the service is ready: opened after the readiness verdict,
 *   closed when the run ends (stop, failure, exit, restart) and when the supervisor ends.
 * - restart on-failure: a ready run that ends with a non-zero code or a signal (not a stop) is
 *   started again after 1 s, 2 s, 4 s ... at most 30 s; a run that stayed up 60 s resets the
 *   backoff; after RESTART_LIMIT failures in a row the service is `failed`.
 * - Pause (pause.ts): suspend() hands over every running service (its run as given, its
 *   restart state) and from then on this supervisor writes nothing for them; the records stay
 *   as they were (published_ports: the host ports a resume listens on again). The resumed
 *   machine's supervisor adopts each run (service.adopt), appends to the same logs, and
 *   listens on the same host ports again; a port taken meanwhile is said in end_reason and the
 *   service goes on without it.
 * - The supervisor's end ends every service (`stopped`, with the reason): the machine goes
 *   with it. A supervisor that finds records of running services when it starts (its
 *   predecessor died) writes them `stopped`.
 */
import { closeSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import net from "node:net";
import { writeFileAtomic } from "../manager/atomic.ts";
import {
  MAX_SERVICES,
  RESTART_BACKOFF_MS,
  RESTART_HEALTHY_MS,
  RESTART_LIMIT,
  readServiceRecord,
  SERVICE_LOG_ROTATE_BYTES,
  type ServiceRecord,
  type ServiceStream,
  serviceDir,
  serviceLogPath,
  serviceNames,
  serviceRecordPath,
  servicesDir,
  serviceTail,
} from "../manager/services.ts";
import { parseRequest, parseResult, type RequestOf } from "../protocol/call.ts";
import type { ClientStream, ServerStream } from "../protocol/connection.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";
import { Channel } from "../protocol/frame.ts";
import { MESSAGE_TABLE } from "../protocol/messages.ts";
import { SupServiceStartRequest, SupServiceStopRequest } from "../protocol/supervisor.ts";
import type { AgentLink } from "./agent.ts";
import { log } from "./log.ts";

/** What the supervisor redacts secrets with (src/manager/redact.ts's Redactor fits). */
export interface LogRedactor {
  stream(): { push(chunk: Uint8Array): Uint8Array; flush(): Uint8Array };
  value<T>(x: T): T;
  error(err: unknown): PyroError;
}

/** Host ports forwarded to guest ports (the published-port primitive). */
export interface PortForwards {
  open(guestPort: number, hostPort?: number): Promise<ServiceRecord["published_ports"][number]>;
  close(hostPort: number): void;
}

type StartRequest = RequestOf<"sup.service.start">;
type Outcome = "ready" | "ended" | { error: PyroError; neverRan: boolean };
/** How long the agent may take to answer service.stop beyond the grace period. */
const STOP_ANSWER_MS = 15_000;
/** Log lines of each stream put in a SERVICE_NOT_READY message. */
const ERROR_TAIL_LINES = 20;

interface LogFile {
  fd: number;
  size: number;
}

/** A running service as a pause hands it to the next supervisor (sessions.json). */
export interface SavedService {
  service_name: string;
  run: StartRequest["service"];
  failures_in_row: number;
  not_ready: string | null;
  /** it was between runs (an on-failure restart was due) */
  restart_pending: boolean;
}

class Service {
  upstream: ClientStream | null = null;
  /** handed to the next supervisor by a pause: nothing more is written for it here */
  suspended = false;
  flushLogs: () => void = () => {};
  stopping: string | null = null;
  restartTimer: ReturnType<typeof setTimeout> | null = null;
  failuresInRow = 0;
  notReady: string | null = null;
  /** settles when the current run has ended */
  runEnded: Promise<void> = Promise.resolve();
  logs: Record<ServiceStream, LogFile>;

  constructor(
    public rec: ServiceRecord,
    readonly run: StartRequest["service"],
    files: Record<ServiceStream, LogFile>,
  ) {
    this.logs = files;
  }

  get running(): boolean {
    return this.rec.state === "starting" || this.rec.state === "ready";
  }
}

const now = () => new Date().toISOString();

/** PORT_IN_USE unless 127.0.0.1:port can be listened on right now. */
function checkPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new PyroError("PORT_IN_USE", `host port 127.0.0.1:${port} is in use`, {
          details: { host_port: port, errno: err.code },
          hint: "choose another host port, or omit it for an ephemeral one",
        }),
      ),
    );
    probe.listen({ host: "127.0.0.1", port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

export class Services {
  private readonly services = new Map<string, Service>();

  constructor(
    private readonly home: string,
    private readonly id: string,
    private readonly agent: AgentLink,
    private readonly forwards: PortForwards | null,
    private readonly redactor: LogRedactor | null = null,
    /** services a resume adopts (adopt()): not ended here */
    adopting: ReadonlySet<string> = new Set(),
  ) {
    mkdirSync(servicesDir(home, id), { recursive: true, mode: 0o700 });
    for (const name of serviceNames(home, id)) {
      const rec = readServiceRecord(home, id, name);
      if (rec && (rec.state === "starting" || rec.state === "ready") && !adopting.has(name))
        this.write({
          ...rec,
          state: "stopped",
          pid: null,
          published_ports: [],
          ended_at: rec.ended_at ?? now(),
          end_reason: "the workspace's machine ended (its supervisor died)",
        });
    }
  }

  /** services starting or ready (auto-pause waits for them: idle.ts) */
  get runningCount(): number {
    let n = 0;
    for (const svc of this.services.values()) if (svc.running) n++;
    return n;
  }

  /** services with a run on the agent (a pause keeps them) */
  get runningNames(): string[] {
    return [...this.services.values()].filter((s) => s.upstream !== null).map((s) => s.rec.service_name);
  }

  serve(client: ServerStream, op: string): void {
    (async () => {
      if (op === "sup.service.start") return this.start(parseRequest(SupServiceStartRequest, client.request));
      if (op === "sup.service.stop") {
        const req = parseRequest(SupServiceStopRequest, client.request);
        return this.stop(req.service_name, req.grace_ms);
      }
      throw new PyroError("INVALID_INPUT", `unknown supervisor request ${op}`);
    })().then(
      (result) => client.result(result),
      (err) => client.fail(this.redactor ? this.redactor.error(err) : err),
    );
  }

  private write(rec: ServiceRecord): void {
    try {
      writeFileAtomic(serviceRecordPath(this.home, this.id, rec.service_name), JSON.stringify(rec));
    } catch (err) {
      log(`service ${rec.service_name}: cannot write its record: ${(err as Error).message}`);
    }
  }

  private update(svc: Service, change: Partial<ServiceRecord>): void {
    svc.rec = { ...svc.rec, ...change };
    this.write(svc.rec);
  }

  private async start(req: StartRequest): Promise<ServiceRecord> {
    const name = req.service.service_name;
    const existing = this.services.get(name);
    if (existing && (existing.running || existing.restartTimer)) {
      throw new PyroError("SERVICE_EXISTS", `service ${name} is already running in this workspace`, {
        details: { service_name: name, state: existing.rec.state },
        hint: "stop it first, or choose another name",
      });
    }
    const running = [...this.services.values()].filter((s) => s.running || s.restartTimer).length;
    if (running >= MAX_SERVICES)
      throw new PyroError("SERVICE_LIMIT_REACHED", `a workspace runs at most ${MAX_SERVICES} services`);
    if (req.publish.length > 0 && !this.forwards)
      throw new PyroError("PUBLISH_NOT_ALLOWED", "this workspace's supervisor cannot publish ports");
    // A host port that is taken fails the start before anything runs (it is checked again,
    // for real, when the forward opens once the service is ready).
    for (const p of req.publish) if (p.host_port !== null) await checkPortFree(p.host_port);

    const dir = serviceDir(this.home, this.id, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const open = (s: ServiceStream): LogFile => ({
      fd: openSync(serviceLogPath(this.home, this.id, name, s), "a", 0o600),
      size: 0,
    });
    const at = now();
    // The record keeps the command redacted (a value typed into it never reaches the file);
    // the run itself (svc.run) keeps it as given.
    const shown = <T>(x: T): T => (this.redactor ? this.redactor.value(x) : x);
    const svc = new Service(
      {
        service_name: name,
        state: "starting",
        command: shown(req.service.command ?? null),
        argv: shown(req.service.argv ?? null),
        cwd: shown(req.service.cwd ?? null),
        readiness: req.service.readiness ?? null,
        ready_timeout_ms: req.service.ready_timeout_ms,
        ready_interval_ms: req.service.ready_interval_ms,
        restart: req.restart,
        stop_grace_ms: req.service.stop_grace_ms,
        publish: req.publish,
        published_ports: [],
        started_at: at,
        run_started_at: at,
        ready_at: null,
        ended_at: null,
        exit_code: null,
        signal: null,
        restart_count: 0,
        end_reason: null,
        pid: null,
        supervisor_pid: process.pid,
        stdout_base: 0,
        stderr_base: 0,
      },
      req.service,
      { stdout: open("stdout"), stderr: open("stderr") },
    );
    this.write(svc.rec);
    this.services.set(name, svc);
    const outcome = await this.launch(svc);
    if (typeof outcome === "object") {
      if (outcome.neverRan) {
        // nothing ran: leave nothing behind
        for (const f of Object.values(svc.logs)) closeSync(f.fd);
        this.services.delete(name);
        rmSync(dir, { recursive: true, force: true });
      } else {
        await svc.runEnded;
        this.update(svc, { state: "failed" });
      }
      throw outcome.error;
    }
    if (svc.rec.state !== "ready") throw this.notReadyError(svc);
    return svc.rec;
  }

  private notReadyError(svc: Service): PyroError {
    const tail = serviceTail(this.home, this.id, svc.rec, ERROR_TAIL_LINES);
    const show = (label: string, text: string) =>
      text ? `\n--- ${label} (last ${ERROR_TAIL_LINES} lines) ---\n${text.trimEnd()}` : "";
    return new PyroError(
      "SERVICE_NOT_READY",
      `service ${svc.rec.service_name} did not become ready: ${svc.rec.end_reason ?? svc.rec.state}${show("stdout", tail.stdout)}${show("stderr", tail.stderr)}`,
      {
        details: {
          service_name: svc.rec.service_name,
          state: svc.rec.state,
          exit_code: svc.rec.exit_code,
          stdout_tail: tail.stdout,
          stderr_tail: tail.stderr,
        },
        hint: `see \`pyro workspace service logs ID ${svc.rec.service_name}\``,
      },
    );
  }

  private append(svc: Service, stream: ServiceStream, bytes: Uint8Array): void {
    const f = svc.logs[stream];
    if (f.fd < 0) return; // closed: the supervisor is ending
    try {
      if (f.size > 0 && f.size + bytes.byteLength > SERVICE_LOG_ROTATE_BYTES) {
        const path = serviceLogPath(this.home, this.id, svc.rec.service_name, stream);
        closeSync(f.fd);
        renameSync(path, serviceLogPath(this.home, this.id, svc.rec.service_name, stream, true));
        f.fd = openSync(path, "a", 0o600);
        this.update(svc, { [`${stream}_base`]: svc.rec[`${stream}_base`] + f.size });
        f.size = 0;
      }
      if (bytes.byteLength === 0) return;
      writeSync(f.fd, bytes);
      f.size += bytes.byteLength;
    } catch (err) {
      log(`service ${svc.rec.service_name}: log write failed: ${(err as Error).message}`);
    }
  }

  /**
   * Run the service once: resolves with "ready" or "ended" once the first verdict (or the end)
   * is known, or with the error (neverRan: the agent refused to start the first run).
   */
  private launch(svc: Service, adopt = false): Promise<Outcome> {
    const request = adopt
      ? { op: "service.adopt" as const, service_name: svc.rec.service_name }
      : { op: "service.start" as const, ...svc.run };
    parseRequest(MESSAGE_TABLE[request.op].request, request);
    svc.notReady = null;
    let upstream: ClientStream;
    try {
      upstream = this.agent.open(request);
    } catch (err) {
      return Promise.resolve({ error: toPyroError(err), neverRan: svc.rec.restart_count === 0 });
    }
    svc.upstream = upstream;
    const redact = this.redactor ? { stdout: this.redactor.stream(), stderr: this.redactor.stream() } : null;
    const flush = () => {
      if (!redact) return;
      this.append(svc, "stdout", redact.stdout.flush());
      this.append(svc, "stderr", redact.stderr.flush());
    };
    svc.flushLogs = flush;
    let settle!: (v: Outcome) => void;
    const first = new Promise<Outcome>((res) => {
      settle = res;
    });
    let started = false;
    let endRun!: () => void;
    svc.runEnded = new Promise((res) => {
      endRun = res;
    });
    const pumped = (async () => {
      for await (const ev of upstream.events) {
        if (svc.suspended) continue;
        if (ev.kind === "data") {
          const stream = ev.channel === Channel.STDERR ? "stderr" : "stdout";
          this.append(svc, stream, redact ? redact[stream].push(ev.bytes) : ev.bytes);
          continue;
        }
        const m = ev.message;
        if (m.type === "started" && typeof m.pid === "number") {
          started = true;
          this.update(svc, { pid: m.pid });
        } else if (m.type === "adopted" && typeof m.pid === "number") {
          started = true;
          const dropped = Number(m.dropped_bytes ?? 0);
          if (dropped > 0)
            this.append(
              svc,
              "stderr",
              new TextEncoder().encode(
                `[pyro: ${dropped} bytes of output were dropped while the workspace paused]\n`,
              ),
            );
          this.update(svc, { pid: m.pid, supervisor_pid: process.pid });
          settle("ready");
        } else if (m.type === "ready") {
          await this.becameReady(svc).then(
            () => settle("ready"),
            async (err: unknown) => {
              // a port could not be published: the service is not usable as asked
              svc.stopping = `its port could not be published: ${(err as Error).message}`;
              await this.agentStop(svc.rec.service_name, 0).catch(() => {});
              settle({ error: toPyroError(err), neverRan: false });
            },
          );
        } else if (m.type === "not_ready" && typeof m.reason === "string") {
          svc.notReady = m.reason;
        }
      }
    })();
    upstream.done.then(
      async (raw) => {
        await pumped.catch(() => {});
        if (svc.suspended) return settle("ended");
        flush();
        this.ended(svc, parseResult("service.start", raw));
        endRun();
        settle("ended");
      },
      async (err: unknown) => {
        await pumped.catch(() => {});
        if (svc.suspended) return settle("ended");
        flush();
        svc.upstream = null;
        this.closePorts(svc);
        const error = toPyroError(err);
        if (!started && svc.rec.restart_count === 0 && !adopt) {
          endRun();
          settle({ error, neverRan: true });
          return;
        }
        this.update(svc, {
          state: svc.stopping ? "stopped" : "failed",
          pid: null,
          ended_at: now(),
          end_reason: svc.stopping ?? `the agent stream failed: ${error.message}`,
        });
        endRun();
        settle("ended");
      },
    );
    return first;
  }

  private async becameReady(svc: Service): Promise<void> {
    const ports: ServiceRecord["published_ports"] = [];
    try {
      for (const p of svc.rec.publish) {
        if (!this.forwards) throw new PyroError("PUBLISH_NOT_ALLOWED", "ports cannot be published here");
        ports.push(await this.forwards.open(p.guest_port, p.host_port ?? undefined));
      }
    } catch (err) {
      for (const p of ports) this.forwards?.close(p.host_port);
      throw err;
    }
    this.update(svc, { state: "ready", ready_at: now(), published_ports: ports, end_reason: null });
  }

  private closePorts(svc: Service): void {
    for (const p of svc.rec.published_ports) {
      try {
        this.forwards?.close(p.host_port);
      } catch {}
    }
    if (svc.rec.published_ports.length) this.update(svc, { published_ports: [] });
  }

  /** A run ended with its result: record how, and restart it if the policy says so. */
  private ended(svc: Service, r: { exit_code: number | null; signal: string | null; ready: boolean }): void {
    svc.upstream = null;
    this.closePorts(svc);
    const how = r.signal ? `killed by ${r.signal}` : `exit code ${r.exit_code}`;
    const end = { pid: null, ended_at: now(), exit_code: r.exit_code, signal: r.signal };
    if (svc.stopping) {
      this.update(svc, { ...end, state: "stopped", end_reason: svc.stopping });
      return;
    }
    const failedRun = !r.ready || r.exit_code !== 0 || r.signal !== null;
    const why = !r.ready
      ? svc.notReady
        ? `not ready within ${svc.rec.ready_timeout_ms / 1000} s: ${svc.notReady}`
        : `exited before it was ready (${how})`
      : `exited (${how})`;
    if (!failedRun) {
      this.update(svc, { ...end, state: "exited", end_reason: why });
      return;
    }
    // The first run is judged by start (no restart before it was ever ready).
    const everReady = svc.rec.ready_at !== null;
    if (svc.rec.restart !== "on-failure" || !everReady) {
      this.update(svc, { ...end, state: r.ready ? "exited" : "failed", end_reason: why });
      return;
    }
    if (Date.now() - Date.parse(svc.rec.run_started_at) >= RESTART_HEALTHY_MS) svc.failuresInRow = 0;
    svc.failuresInRow += 1;
    if (svc.failuresInRow > RESTART_LIMIT) {
      this.update(svc, {
        ...end,
        state: "failed",
        end_reason: `${why}; gave up after ${RESTART_LIMIT} restarts in a row`,
      });
      return;
    }
    const delay = Math.min(RESTART_BACKOFF_MS.first * 2 ** (svc.failuresInRow - 1), RESTART_BACKOFF_MS.max);
    this.update(svc, {
      ...end,
      state: "starting",
      end_reason: `${why}; restarting in ${delay / 1000} s`,
    });
    this.scheduleRestart(svc, delay);
  }

  private scheduleRestart(svc: Service, delay: number): void {
    svc.restartTimer = setTimeout(() => {
      svc.restartTimer = null;
      if (svc.stopping) return;
      this.update(svc, {
        restart_count: svc.rec.restart_count + 1,
        run_started_at: now(),
        exit_code: null,
        signal: null,
        ended_at: null,
      });
      void this.launch(svc).then((v) => {
        if (typeof v === "object") log(`service ${svc.rec.service_name}: restart failed: ${v.error.message}`);
      });
    }, delay);
  }

  private async agentStop(name: string, graceMs: number): Promise<void> {
    const request = { op: "service.stop" as const, service_name: name, grace_ms: graceMs };
    parseRequest(MESSAGE_TABLE["service.stop"].request, request);
    const upstream = this.agent.open(request);
    const timer = setTimeout(() => {
      upstream.abort(
        new PyroError("AGENT_UNRESPONSIVE", "the agent did not answer service.stop in time", {
          hint: this.agent.hint,
        }),
      );
    }, graceMs + STOP_ANSWER_MS);
    try {
      parseResult("service.stop", await upstream.done);
    } finally {
      clearTimeout(timer);
    }
  }

  private async stop(name: string, graceMs: number): Promise<ServiceRecord> {
    const svc = this.services.get(name);
    if (!svc) {
      const rec = readServiceRecord(this.home, this.id, name);
      if (rec) return rec; // recorded by an earlier machine: it is not running
      throw new PyroError("SERVICE_NOT_FOUND", `no service ${name} in this workspace`, {
        details: { service_name: name },
      });
    }
    svc.stopping = "stopped by request";
    if (svc.restartTimer) {
      clearTimeout(svc.restartTimer);
      svc.restartTimer = null;
      this.update(svc, { state: "stopped", end_reason: svc.stopping });
      return svc.rec;
    }
    if (svc.upstream) {
      await this.agentStop(name, graceMs);
      await svc.runEnded;
    }
    return svc.rec;
  }

  /**
   * A pause: hand over every service that runs or waits for a restart (the pause keeps its
   * run in the guest); nothing more is written for them here.
   */
  suspend(): SavedService[] {
    const saved: SavedService[] = [];
    for (const svc of this.services.values()) {
      const pending = svc.restartTimer !== null;
      if (!svc.running && !pending) continue;
      if (svc.restartTimer) clearTimeout(svc.restartTimer);
      svc.restartTimer = null;
      svc.flushLogs();
      svc.suspended = true;
      for (const f of Object.values(svc.logs)) {
        try {
          if (f.fd >= 0) closeSync(f.fd);
        } catch {}
        f.fd = -1;
      }
      saved.push({
        service_name: svc.rec.service_name,
        run: svc.run,
        failures_in_row: svc.failuresInRow,
        not_ready: svc.notReady,
        restart_pending: pending || !svc.upstream,
      });
    }
    return saved;
  }

  /** A resume: continue the services a pause kept, on the same logs and host ports. */
  async adopt(saved: readonly SavedService[]): Promise<void> {
    for (const s of saved) {
      const rec = readServiceRecord(this.home, this.id, s.service_name);
      if (!rec) continue;
      const reopen = (stream: ServiceStream): LogFile => {
        const path = serviceLogPath(this.home, this.id, s.service_name, stream);
        let size = 0;
        try {
          size = statSync(path).size;
        } catch {}
        return { fd: openSync(path, "a", 0o600), size };
      };
      const svc = new Service({ ...rec, supervisor_pid: process.pid }, s.run, {
        stdout: reopen("stdout"),
        stderr: reopen("stderr"),
      });
      svc.failuresInRow = s.failures_in_row;
      svc.notReady = s.not_ready;
      this.services.set(s.service_name, svc);
      this.write(svc.rec);
      if (s.restart_pending) {
        this.scheduleRestart(svc, RESTART_BACKOFF_MS.first);
        continue;
      }
      const wasReady = rec.state === "ready";
      const outcome = await this.launch(svc, true);
      if (typeof outcome === "object" || !wasReady || !svc.upstream) {
        if (typeof outcome === "object")
          log(`service ${s.service_name} was not adopted: ${outcome.error.message}`);
        continue;
      }
      await this.relisten(svc, rec.published_ports);
    }
  }

  /** Listen again on the host ports a ready service had before the pause (same ports). */
  private async relisten(svc: Service, before: ServiceRecord["published_ports"]): Promise<void> {
    const ports: ServiceRecord["published_ports"] = [];
    const missed: string[] = [];
    for (const p of svc.rec.publish) {
      const host = before.find((b) => b.guest_port === p.guest_port)?.host_port ?? p.host_port ?? 0;
      try {
        if (!this.forwards) throw new PyroError("PUBLISH_NOT_ALLOWED", "ports cannot be published here");
        ports.push(await this.forwards.open(p.guest_port, host));
      } catch (err) {
        missed.push(`guest port ${p.guest_port} is not published: ${(err as Error).message}`);
      }
    }
    if (!svc.upstream || svc.rec.state !== "ready") {
      for (const p of ports) this.forwards?.close(p.host_port);
      return;
    }
    this.update(svc, {
      published_ports: ports,
      end_reason: missed.length ? `resumed; ${missed.join("; ")}` : svc.rec.end_reason,
    });
  }

  /** A pause failed after suspend(): what it handed over ended with the machine. */
  endSuspended(reason: string): void {
    for (const svc of this.services.values()) {
      if (!svc.suspended) continue;
      this.update(svc, {
        state: "stopped",
        pid: null,
        published_ports: [],
        ended_at: now(),
        end_reason: reason,
      });
    }
  }

  /** The supervisor is ending for `reason`: every service ends with the machine. */
  endAll(reason: string): void {
    for (const svc of this.services.values()) {
      if (svc.restartTimer) clearTimeout(svc.restartTimer);
      svc.restartTimer = null;
      for (const f of Object.values(svc.logs)) {
        try {
          if (f.fd >= 0) closeSync(f.fd);
        } catch {}
        f.fd = -1; // a late frame must not write into whatever reuses the number
      }
      if (!svc.running) continue;
      svc.stopping = `the workspace stopped (${reason})`;
      this.closePorts(svc);
      this.update(svc, { state: "stopped", pid: null, ended_at: now(), end_reason: svc.stopping });
    }
  }
}
