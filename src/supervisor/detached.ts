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

interface Running {
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
  ) {
    mkdirSync(execsDir(home, id), { recursive: true, mode: 0o700 });
    for (const execId of listExecIds(home, id)) {
      const start = readStart(home, id, execId);
      if (start?.idempotency_key) this.keys.set(start.idempotency_key, Promise.resolve(execId));
      if (!readEnd(home, id, execId))
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
    const open = (s: "stdout" | "stderr") => openSync(spoolPath(this.home, this.id, execId, s), "a", 0o600);
    const fds = { stdout: open("stdout"), stderr: open("stderr") };
    let upstream: ClientStream;
    try {
      upstream = this.agent.open(exec);
    } catch (err) {
      this.discard(dir, fds);
      throw err;
    }
    const redact = this.redactor ? { stdout: this.redactor.stream(), stderr: this.redactor.stream() } : null;
    const run: Running = { upstream, startedAt, fds, redact, ended: false, killedBy: null };
    this.running.set(execId, run);
    const recordHistory = this.history.hookFor(exec);

    let sawStarted = false;
    let runs!: () => void;
    const running = new Promise<void>((res) => {
      runs = res;
    });
    const spooled = (async () => {
      for await (const ev of upstream.events) {
        if (ev.kind === "json" && ev.message.type === "started") {
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
    const neverRan = await Promise.race([
      running.then(() => null),
      upstream.done.then(
        () => null,
        async (err: unknown) => {
          await spooled.catch(() => {});
          return sawStarted ? null : err;
        },
      ),
    ]);
    if (neverRan !== null) {
      await outcome;
      this.discard(dir, null);
      throw neverRan;
    }
    return execId;
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
