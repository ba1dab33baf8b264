/**
 * Detached execs, the supervisor's side (`sup.exec.start`, `sup.exec.kill`): the supervisor
 * opens the exec on the agent itself, so no client holds the stream and none can take the
 * command with it, and spools stdout and stderr to the workspace's logs/exec/<exec_id>/ on
 * the host as the agent streams them (file layout and client side: src/manager/detached.ts).
 *
 * Invariants:
 * - start.json is written before the command starts and end.json exactly once after it
 *   ends: on its result (exit code, duration, end time), or when the supervisor ends while
 *   it runs (stop, TTL, machine exit: state `lost` with the reason). A supervisor that finds
 *   an exec without end.json when it starts (its predecessor died) writes that end then.
 * - A start that fails before the command runs (bad cwd, agent unresponsive) leaves nothing.
 * - Secret values are redacted before anything is written: the command line in start.json,
 *   and each spool through its own stream redactor (flushed when the exec ends).
 * - Spool writes are synchronous appends as each data frame arrives: the supervisor holds no
 *   output in memory and needs no flow control for it.
 * - Pause (pause.ts): suspend() hands over what runs (ids, pids, the requests) and from then on
 *   this supervisor writes nothing more for them; the resumed machine's supervisor adopts
 *   them (exec.adopt) and goes on appending to the same spools, so one exec's output is
 *   whole across the pause. One not yet started when the pause came is recorded `lost`.
 * - One idempotency key names one exec of the workspace (until reset clears the spools):
 *   a start with a key already used answers with that exec, even while the first start is
 *   still waiting for the command to run.
 */
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from "node:fs";
import {
  execDir,
  execsDir,
  listExecIds,
  lostEnd,
  newExecId,
  readEnd,
  readStart,
  spoolPath,
  writeEnd,
  writeStart,
} from "../manager/detached.ts";
import type { Redactor, StreamRedactor } from "../manager/redact.ts";
import { parseRequest, parseResult } from "../protocol/call.ts";
import type { ClientStream, ServerStream } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { Channel } from "../protocol/frame.ts";
import { SupExecKillRequest, SupExecStartRequest } from "../protocol/supervisor.ts";
import type { AgentLink } from "./agent.ts";
import type { CommandHistory } from "./history.ts";
import { log } from "./log.ts";

/** A running exec as a pause hands it to the next supervisor (sessions.json). */
export interface SavedExec {
  exec_id: string;
  pid: number;
  started_at: string;
  killed_by: string | null;
  exec: Record<string, unknown>;
}

interface Running {
  pid: number;
  exec: Record<string, unknown>;
  upstream: ClientStream;
  startedAt: string;
  fds: { stdout: number; stderr: number };
  redact: { stdout: StreamRedactor; stderr: StreamRedactor } | null;
  ended: boolean;
  killedBy: string | null;
}

export class DetachedExecs {
  private readonly running = new Map<string, Running>();
  /** idempotency key → the exec it started (a promise while that start is in flight) */
  private readonly keys = new Map<string, Promise<string>>();

  constructor(
    private readonly home: string,
    private readonly id: string,
    private readonly agent: AgentLink,
    private readonly history: CommandHistory,
    private readonly redactor: Redactor | null = null,
    /** execs a resume adopts (adopt()): not ended here */
    adopting: ReadonlySet<string> = new Set(),
  ) {
    mkdirSync(execsDir(home, id), { recursive: true, mode: 0o700 });
    for (const execId of listExecIds(home, id)) {
      const start = readStart(home, id, execId);
      if (start?.idempotency_key) this.keys.set(start.idempotency_key, Promise.resolve(execId));
      if (!readEnd(home, id, execId) && !adopting.has(execId))
        writeEnd(
          home,
          id,
          execId,
          lostEnd("the workspace's supervisor ended before the command did (it died with its machine)", null),
        );
    }
  }

  /** detached execs still running (auto-pause waits for them: idle.ts) */
  get runningCount(): number {
    let n = 0;
    for (const r of this.running.values()) if (!r.ended) n++;
    return n;
  }

  /** process groups of the running execs (a pause keeps them) */
  get runningPids(): number[] {
    return [...this.running.values()].filter((r) => !r.ended && r.pid > 0).map((r) => r.pid);
  }

  /** Answer a `sup.exec.*` request. */
  serve(client: ServerStream, op: string): void {
    (async () => {
      if (op === "sup.exec.start") {
        const req = parseRequest(SupExecStartRequest, client.request);
        return this.start(req.exec, req.idempotency_key);
      }
      if (op === "sup.exec.kill") {
        const req = parseRequest(SupExecKillRequest, client.request);
        const r = this.running.get(req.exec_id);
        if (!r || r.ended) return { killed: false };
        r.killedBy = `killed by request (${req.signal})`;
        r.upstream.sendJson({ op: "signal", signal: req.signal });
        return { killed: true };
      }
      throw new PyroError("INVALID_INPUT", `unknown supervisor request ${op}`);
    })().then(
      (result) => client.result(result),
      (err) => client.fail(this.redactor ? this.redactor.error(err) : err),
    );
  }

  private async start(
    exec: Record<string, unknown>,
    key: string | undefined,
  ): Promise<{ exec_id: string; reused: boolean }> {
    const existing = key === undefined ? undefined : this.keys.get(key);
    if (existing) return { exec_id: await existing, reused: true };
    const launched = this.launch(exec, key ?? null);
    if (key !== undefined) {
      this.keys.set(key, launched);
      launched.catch(() => this.keys.delete(key));
    }
    return { exec_id: await launched, reused: false };
  }

  /** Start the command; resolves with its id once it runs (or already ended), rejects if it never ran. */
  private async launch(exec: Record<string, unknown>, key: string | null): Promise<string> {
    const execId = newExecId();
    const dir = execDir(this.home, this.id, execId);
    mkdirSync(dir, { mode: 0o700 });
    const startedAt = new Date().toISOString();
    const shown = <T>(x: T): T => (this.redactor ? this.redactor.value(x) : x);
    writeStart(this.home, this.id, {
      exec_id: execId,
      command: typeof exec.command === "string" ? shown(exec.command) : null,
      argv: Array.isArray(exec.argv) ? shown(exec.argv as string[]) : null,
      cwd: typeof exec.cwd === "string" ? shown(exec.cwd) : null,
      idempotency_key: key,
      started_at: startedAt,
      supervisor_pid: process.pid,
    });
    const fds = this.openSpools(execId);
    let upstream: ClientStream;
    try {
      upstream = this.agent.open(exec);
    } catch (err) {
      this.discard(dir, fds);
      throw err;
    }
    const { neverRan } = this.follow(execId, exec, upstream, fds, startedAt, null);
    const why = await neverRan;
    if (why !== null) {
      this.discard(dir, null);
      throw why;
    }
    return execId;
  }

  private openSpools(execId: string): { stdout: number; stderr: number } {
    const open = (s: "stdout" | "stderr") => openSync(spoolPath(this.home, this.id, execId, s), "a", 0o600);
    return { stdout: open("stdout"), stderr: open("stderr") };
  }

  /**
   * Spool what `upstream` (exec or exec.adopt) sends and record the end. `neverRan` resolves
   * once the command runs (null), or with the error when it ended without ever running.
   */
  private follow(
    execId: string,
    exec: Record<string, unknown>,
    upstream: ClientStream,
    fds: { stdout: number; stderr: number },
    startedAt: string,
    killedBy: string | null,
  ): { upstream: ClientStream; neverRan: Promise<unknown> } {
    const shown = <T>(x: T): T => (this.redactor ? this.redactor.value(x) : x);
    const redact = this.redactor ? { stdout: this.redactor.stream(), stderr: this.redactor.stream() } : null;
    const run: Running = { pid: 0, exec, upstream, startedAt, fds, redact, ended: false, killedBy };
    this.running.set(execId, run);
    const recordHistory = this.history.hookFor(exec);

    let sawStarted = false;
    let runs!: () => void;
    const running = new Promise<void>((res) => {
      runs = res;
    });
    const spooled = (async () => {
      for await (const ev of upstream.events) {
        if (ev.kind === "json" && (ev.message.type === "started" || ev.message.type === "adopted")) {
          if (typeof ev.message.pid === "number") run.pid = ev.message.pid;
          const dropped = Number(ev.message.dropped_bytes ?? 0);
          if (dropped > 0 && !run.ended)
            writeSync(
              fds.stderr,
              `[pyro: ${dropped} bytes of output were dropped while the workspace paused]\n`,
            );
          sawStarted = true;
          runs();
        } else if (ev.kind === "data" && !run.ended) {
          const which = ev.channel === Channel.STDERR ? "stderr" : "stdout";
          try {
            writeSync(fds[which], redact ? redact[which].push(ev.bytes) : ev.bytes);
          } catch (err) {
            log(`detached exec ${execId}: spool write failed: ${(err as Error).message}`);
          }
        }
      }
    })();
    const outcome = upstream.done.then(
      async (raw) => {
        await spooled;
        const result = parseResult("exec", raw);
        if (run.ended) return;
        this.close(execId, run);
        writeEnd(this.home, this.id, execId, {
          state: "exited",
          ended_at: new Date().toISOString(),
          exit_code: result.exit_code,
          signal: result.signal,
          timed_out: result.timed_out,
          duration_ms: result.duration_ms,
          stdout_truncated: result.stdout_truncated,
          stderr_truncated: result.stderr_truncated,
          end_reason: run.killedBy ?? (result.timed_out ? "timed out" : null),
        });
        await recordHistory?.(raw);
      },
      async (err: PyroError) => {
        await spooled.catch(() => {});
        if (run.ended) return;
        this.close(execId, run);
        writeEnd(
          this.home,
          this.id,
          execId,
          lostEnd(`the agent stream failed: ${shown(err.message)}`, startedAt),
        );
      },
    );
    // Answer once the command runs, or once it ended without running (e.g. 127: not found).
    const neverRan = Promise.race([
      running.then(() => null),
      upstream.done.then(
        () => null,
        async (err: unknown) => {
          await spooled.catch(() => {});
          return sawStarted ? null : err;
        },
      ),
    ]).then(async (why) => {
      if (why !== null) await outcome;
      return why;
    });
    return { upstream, neverRan };
  }

  /**
   * A pause: hand over every running exec (the pause keeps it in the guest) and write nothing
   * more for them; one that has not started yet is recorded lost.
   */
  suspend(): SavedExec[] {
    const saved: SavedExec[] = [];
    for (const [execId, run] of [...this.running]) {
      if (run.pid > 0) {
        saved.push({
          exec_id: execId,
          pid: run.pid,
          started_at: run.startedAt,
          killed_by: run.killedBy,
          exec: run.exec,
        });
        this.close(execId, run);
      } else {
        this.close(execId, run);
        writeEnd(
          this.home,
          this.id,
          execId,
          lostEnd("the workspace paused before the command started", run.startedAt),
        );
      }
    }
    return saved;
  }

  /** A pause failed after suspend(): the execs it handed over ended with the machine. */
  endSuspended(saved: readonly SavedExec[], reason: string): void {
    for (const e of saved)
      if (!readEnd(this.home, this.id, e.exec_id))
        writeEnd(this.home, this.id, e.exec_id, lostEnd(reason, e.started_at));
  }

  /** A resume: continue the execs a pause kept (their spools go on where they stopped). */
  async adopt(saved: readonly SavedExec[]): Promise<void> {
    for (const e of saved) {
      // this supervisor owns it now (a client judges a running exec by its owner: manager/detached.ts)
      const start = readStart(this.home, this.id, e.exec_id);
      if (start) writeStart(this.home, this.id, { ...start, supervisor_pid: process.pid });
      const fds = this.openSpools(e.exec_id);
      const upstream = this.agent.open({ op: "exec.adopt", pid: e.pid });
      const { neverRan } = this.follow(e.exec_id, e.exec, upstream, fds, e.started_at, e.killed_by);
      const why = await neverRan;
      if (why !== null) log(`detached exec ${e.exec_id} was not adopted: ${(why as Error).message}`);
    }
  }

  private close(execId: string, run: Running): void {
    run.ended = true;
    this.running.delete(execId);
    if (run.redact) {
      try {
        writeSync(run.fds.stdout, run.redact.stdout.flush());
        writeSync(run.fds.stderr, run.redact.stderr.flush());
      } catch {}
    }
    closeSync(run.fds.stdout);
    closeSync(run.fds.stderr);
  }

  private discard(dir: string, fds: { stdout: number; stderr: number } | null): void {
    if (fds) {
      closeSync(fds.stdout);
      closeSync(fds.stderr);
    }
    rmSync(dir, { recursive: true, force: true });
  }

  /** The supervisor is ending for `reason`: every running exec ends now, recorded as lost. */
  endAll(reason: string): void {
    for (const [execId, run] of [...this.running]) {
      this.close(execId, run);
      writeEnd(
        this.home,
        this.id,
        execId,
        lostEnd(`the workspace stopped while the command was running (${reason})`, run.startedAt),
      );
    }
  }
}
