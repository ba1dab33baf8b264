/**
 * Persistent shells (`sup.shell.*`): the supervisor opens each shell on the agent itself
 * (shell.open, guest/shell.ts) and keeps its output, so a shell outlives every client that
 * uses it; clients write, signal, resize and close through here and read by cursor.
 *
 * Invariants:
 * - The output buffer is append-only and bounded (SHELL_BUFFER_CHARS per shell): when it is
 *   full the oldest characters are dropped, and a read whose cursor fell behind starts at
 *   the oldest kept character with `truncated: true` (the caller renders the marker).
 * - Cursors count characters (UTF-16 code units) of the output decoded as UTF-8 since the
 *   shell opened; they never move backwards and never split a surrogate pair.
 * - A read's answer is one frame: it stops at max_chars or where the JSON-escaped output
 *   would pass READ_FRAME_BUDGET, whichever comes first (`has_more` says the rest waits).
 * - A shell that ends by itself stays readable (state "exited") until it is closed; a closed
 *   id answers SHELL_CLOSED, an unknown one SHELL_NOT_FOUND. At most MAX_SHELLS are kept.
 * - wait_for_idle_ms returns once no output arrived for that long, counted from the later of
 *   the last output and the read's start (so a read right after a write waits for the
 *   answer), or when the shell ends, or after timeout_ms.
 * - Secret values are redacted from the output before it is kept (one stream redactor per
 *   shell, so a value split across chunks is caught; what it holds back is kept at the end),
 *   and from every error.
 * - Shells end with the supervisor (stop, reset, delete): the agent's machine goes, and a
 *   host-compat agent kills its shells' sessions when it exits.
 * - Pause (pause.ts): suspend() hands over every shell (its kept output and cursors, size,
 *   state); the pause keeps the running ones in the guest, and the resumed machine's
 *   supervisor adopts them (shell.adopt), so a read goes on from the same cursor with the
 *   same process. Output the agent had to drop meanwhile is marked in the output.
 */
import { randomBytes } from "node:crypto";
import type * as v from "valibot";
import type { Redactor, StreamRedactor } from "../manager/redact.ts";
import { parseRequest, parseResult, type RequestOf, type ResultOf } from "../protocol/call.ts";
import type { ServerStream } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { MAX_FRAME_PAYLOAD } from "../protocol/frame.ts";
import { MESSAGE_TABLE } from "../protocol/messages.ts";
import { SUPERVISOR_TABLE } from "../protocol/supervisor.ts";
import type { AgentLink } from "./agent.ts";
import { log } from "./log.ts";

/** Characters of output kept per shell (older ones are dropped). */
export const SHELL_BUFFER_CHARS = 4 * 1024 * 1024;
export const MAX_SHELLS = 8;
export const DEFAULT_READ_CHARS = 65536;
/** JSON bytes of output one read answers with at most: the answer is one protocol frame. */
const READ_FRAME_BUDGET = MAX_FRAME_PAYLOAD - 64 * 1024;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** How long an agent may take to answer a write, signal, resize or close. */
const AGENT_ANSWER_MS = 15_000;

type Info = ResultOf<"sup.shell.open">;
type ShellOp = "shell.write" | "shell.signal" | "shell.resize" | "shell.close";

/** A shell as a pause hands it to the next supervisor (sessions.json). */
export interface SavedShell {
  shell_id: string;
  state: "running" | "exited";
  cwd: string;
  cols: number;
  rows: number;
  started_at: string;
  ended_at: string | null;
  exit_code: number | null;
  start: number;
  kept: string;
}

class Shell {
  state: "running" | "exited" = "running";
  endedAt: string | null = null;
  exitCode: number | null = null;
  cwd = "/workspace";
  /** kept output, starting at absolute cursor `start` */
  private kept = "";
  private start = 0;
  lastOutput = Date.now();
  private readonly decoder = new TextDecoder("utf-8");
  private waiters: Array<() => void> = [];
  readonly ended: Promise<void>;
  private markEnded!: () => void;

  constructor(
    readonly id: string,
    public cols: number,
    public rows: number,
    private readonly redact: StreamRedactor | null = null,
    readonly startedAt = new Date().toISOString(),
  ) {
    this.ended = new Promise((res) => {
      this.markEnded = res;
    });
  }

  get end(): number {
    return this.start + this.kept.length;
  }

  save(): SavedShell {
    const rest =
      this.state === "running" ? this.decoder.decode(this.redact?.flush() ?? new Uint8Array(0)) : "";
    return {
      shell_id: this.id,
      state: this.state,
      cwd: this.cwd,
      cols: this.cols,
      rows: this.rows,
      started_at: this.startedAt,
      ended_at: this.endedAt,
      exit_code: this.exitCode,
      start: this.start,
      kept: this.kept + rest,
    };
  }

  restore(s: SavedShell): void {
    this.cwd = s.cwd;
    this.start = s.start;
    this.kept = s.kept;
    this.endedAt = s.ended_at;
    this.exitCode = s.exit_code;
    if (s.state === "exited") {
      this.state = "exited";
      this.markEnded();
    }
  }

  /** A marker in the output itself (output the agent dropped while paused). */
  note(text: string): void {
    this.kept += text;
    this.lastOutput = Date.now();
  }

  append(raw: Uint8Array): void {
    const bytes = this.redact ? this.redact.push(raw) : raw;
    const text = this.decoder.decode(bytes, { stream: true });
    if (!text) return;
    this.kept += text;
    this.lastOutput = Date.now();
    // Trim in steps of a quarter buffer so appends stay cheap once the buffer is full.
    if (this.kept.length > SHELL_BUFFER_CHARS + SHELL_BUFFER_CHARS / 4) {
      let drop = this.kept.length - SHELL_BUFFER_CHARS;
      if (isHighSurrogate(this.kept.charCodeAt(drop - 1))) drop += 1;
      this.kept = this.kept.slice(drop);
      this.start += drop;
    }
    for (const w of this.waiters.splice(0)) w();
  }

  finish(exitCode: number | null): void {
    if (this.state === "exited") return;
    const rest = this.decoder.decode(this.redact?.flush() ?? new Uint8Array(0));
    if (rest) this.kept += rest;
    this.state = "exited";
    this.exitCode = exitCode;
    this.endedAt = new Date().toISOString();
    for (const w of this.waiters.splice(0)) w();
    this.markEnded();
  }

  info(state: Info["state"] = this.state): Info {
    return {
      shell_id: this.id,
      state,
      cwd: this.cwd,
      cols: this.cols,
      rows: this.rows,
      started_at: this.startedAt,
      ended_at: this.endedAt,
      exit_code: this.exitCode,
      output_chars: this.end,
    };
  }

  /** Resolves on the next output or the end, or after `ms`. */
  private nextEvent(ms: number): Promise<void> {
    return new Promise((res) => {
      const t = setTimeout(res, ms);
      this.waiters.push(() => {
        clearTimeout(t);
        res();
      });
    });
  }

  async waitIdle(idleMs: number, timeoutMs: number): Promise<void> {
    const begun = Date.now();
    const deadline = begun + timeoutMs;
    while (this.state === "running") {
      const now = Date.now();
      const quiet = now - Math.max(this.lastOutput, begun);
      if (quiet >= idleMs || now >= deadline) return;
      await this.nextEvent(Math.min(idleMs - quiet, deadline - now));
    }
  }

  read(cursor: number | undefined, maxChars: number): ResultOf<"sup.shell.read"> {
    const asked = cursor ?? this.start;
    if (asked > this.end) {
      throw new PyroError(
        "OFFSET_OUT_OF_RANGE",
        `cursor ${asked} is past the end of shell ${this.id}'s output (${this.end})`,
        { details: { cursor: asked, next_cursor: this.end } },
      );
    }
    const from = Math.max(asked, this.start);
    let to = Math.min(this.end, from + maxChars);
    // the answer is one frame: stop where the JSON-escaped output would outgrow it
    to = from + fitJson(this.kept, from - this.start, to - from, READ_FRAME_BUDGET);
    if (to < this.end && to > from && isHighSurrogate(this.kept.charCodeAt(to - 1 - this.start))) to -= 1;
    return {
      ...this.info(),
      output: this.kept.slice(from - this.start, to - this.start),
      cursor: from,
      next_cursor: to,
      truncated: from > asked,
      has_more: to < this.end,
    };
  }
}

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

/**
 * How many of the `n` characters of `s` from `at` fit `budget` bytes once JSON-escaped
 * (counted as JSON.stringify writes them; surrogates as a lone one's 6-byte escape, an over-count
 * for pairs).
 */
function fitJson(s: string, at: number, n: number, budget: number): number {
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(at + i);
    const w =
      c === 0x22 || c === 0x5c
        ? 2
        : c < 0x20
          ? c === 8 || c === 9 || c === 10 || c === 12 || c === 13
            ? 2
            : 6
          : c < 0x80
            ? 1
            : c < 0x800
              ? 2
              : c >= 0xd800 && c <= 0xdfff
                ? 6
                : 3;
    bytes += w;
    if (bytes > budget) return i;
  }
  return n;
}

export class Shells {
  private readonly shells = new Map<string, Shell>();
  private readonly closed = new Set<string>();

  constructor(
    private readonly agent: AgentLink,
    private readonly redactor: Redactor | null = null,
  ) {}

  get count(): number {
    return this.shells.size;
  }

  /** shells whose process still runs (auto-pause waits for them: idle.ts) */
  get live(): number {
    return this.runningIds.length;
  }

  /** ids of the shells whose process runs (a pause keeps them) */
  get runningIds(): string[] {
    return [...this.shells.values()].filter((s) => s.state === "running").map((s) => s.id);
  }

  serve(client: ServerStream, op: string): void {
    this.handle(client, op).then(
      (result) => client.result(result),
      (err) => client.fail(this.redactor ? this.redactor.error(err) : err),
    );
  }

  private async handle(client: ServerStream, op: string): Promise<Record<string, unknown>> {
    const table = SUPERVISOR_TABLE as Record<string, { request: v.GenericSchema }>;
    const entry = table[op];
    if (!entry || !op.startsWith("sup.shell."))
      throw new PyroError("INVALID_INPUT", `unknown supervisor request ${op}`);
    const req = parseRequest(entry.request, client.request) as Record<string, unknown> & { op: string };
    switch (req.op) {
      case "sup.shell.open":
        return this.open(req as RequestOf<"sup.shell.open">);
      case "sup.shell.list":
        return { shells: [...this.shells.values()].map((s) => s.info()) };
      case "sup.shell.read": {
        const r = req as RequestOf<"sup.shell.read">;
        const sh = this.find(r.shell_id, false);
        if (r.cursor !== undefined) sh.read(r.cursor, 0); // a bad cursor fails before any wait
        if (r.wait_for_idle_ms)
          await sh.waitIdle(r.wait_for_idle_ms, r.timeout_ms ?? DEFAULT_IDLE_TIMEOUT_MS);
        return sh.read(r.cursor, r.max_chars ?? DEFAULT_READ_CHARS);
      }
      case "sup.shell.write": {
        const r = req as RequestOf<"sup.shell.write">;
        const sh = this.find(r.shell_id, true);
        await this.agentCall({ op: "shell.write", shell_id: sh.id, input: r.input });
        return sh.info();
      }
      case "sup.shell.signal": {
        const r = req as RequestOf<"sup.shell.signal">;
        const sh = this.find(r.shell_id, true);
        await this.agentCall({ op: "shell.signal", shell_id: sh.id, signal: r.signal });
        return sh.info();
      }
      case "sup.shell.resize": {
        const r = req as RequestOf<"sup.shell.resize">;
        const sh = this.find(r.shell_id, true);
        await this.agentCall({ op: "shell.resize", shell_id: sh.id, cols: r.cols, rows: r.rows });
        sh.cols = r.cols;
        sh.rows = r.rows;
        return sh.info();
      }
      case "sup.shell.close": {
        const sh = this.find((req as RequestOf<"sup.shell.close">).shell_id, false);
        if (sh.state === "running") {
          await this.agentCall({ op: "shell.close", shell_id: sh.id }).catch((err: PyroError) => {
            // it may have ended by itself meanwhile
            if (err.code !== "SHELL_CLOSED" && err.code !== "SHELL_NOT_FOUND") throw err;
          });
          await Promise.race([sh.ended, Bun.sleep(AGENT_ANSWER_MS)]);
        }
        this.shells.delete(sh.id);
        this.closed.add(sh.id);
        return sh.info("closed");
      }
      default:
        throw new PyroError("INVALID_INPUT", `unknown supervisor request ${op}`);
    }
  }

  private find(id: string, mustRun: boolean): Shell {
    const sh = this.shells.get(id);
    if (!sh) {
      if (this.closed.has(id))
        throw new PyroError("SHELL_CLOSED", `shell ${id} was closed`, { details: { shell_id: id } });
      throw new PyroError("SHELL_NOT_FOUND", `no shell ${id} in this workspace`, {
        details: { shell_id: id },
        hint: "list the workspace's shells with `pyro workspace shell list ID`",
      });
    }
    if (mustRun && sh.state !== "running") {
      throw new PyroError("SHELL_CLOSED", `shell ${id} has exited (exit code ${sh.exitCode ?? "none"})`, {
        details: { shell_id: id, exit_code: sh.exitCode },
        hint: "its output can still be read; close it to free its slot",
      });
    }
    return sh;
  }

  private async open(req: RequestOf<"sup.shell.open">): Promise<Info> {
    if (this.shells.size >= MAX_SHELLS) {
      throw new PyroError("SHELL_LIMIT_REACHED", `a workspace keeps at most ${MAX_SHELLS} shells`, {
        hint: "close one with `pyro workspace shell close ID SHELL_ID`",
      });
    }
    const id = `sh_${randomBytes(6).toString("hex")}`;
    const request = { op: "shell.open" as const, shell_id: id, ...withoutOp(req) };
    parseRequest(MESSAGE_TABLE["shell.open"].request, request);
    const sh = new Shell(id, req.cols ?? 120, req.rows ?? 30, this.redactor?.stream() ?? null);
    await this.follow(sh, this.agent.open(request));
    this.shells.set(id, sh);
    return sh.info();
  }

  /** Keep what `upstream` (shell.open or shell.adopt) sends; resolves once the shell runs, rejects if it never did. */
  private async follow(sh: Shell, upstream: ReturnType<AgentLink["open"]>): Promise<void> {
    const id = sh.id;
    let started = () => {};
    const running = new Promise<void>((res) => {
      started = res;
    });
    void (async () => {
      for await (const ev of upstream.events) {
        if (ev.kind === "data") sh.append(ev.bytes);
        else if (ev.message.type === "started") {
          if (typeof ev.message.cwd === "string") sh.cwd = ev.message.cwd;
          started();
        } else if (ev.message.type === "adopted") {
          const dropped = Number(ev.message.dropped_bytes ?? 0);
          if (dropped > 0)
            sh.note(`\r\n[pyro: ${dropped} bytes of output were dropped while the workspace paused]\r\n`);
          started();
        }
      }
    })();
    const opened = upstream.done.then(
      (raw) => {
        const r = parseResult("shell.open", raw);
        sh.finish(r.exit_code ?? (r.signal ? null : 0));
      },
      (err) => {
        sh.finish(null);
        throw err;
      },
    );
    // The open answers once the shell runs, or with the agent's error if it never did.
    await Promise.race([running, opened]);
    opened.catch((err) => {
      const why = (err as Error).message;
      log(`shell ${id} ended: ${this.redactor ? this.redactor.text(why) : why}`);
    });
  }

  /** A pause: every shell as it is now (the pause keeps the running ones in the guest). */
  suspend(): { shells: SavedShell[]; closed: string[] } {
    return { shells: [...this.shells.values()].map((s) => s.save()), closed: [...this.closed] };
  }

  /** A resume: the shells a pause kept, their output and cursors as they were. */
  async adopt(saved: { shells: readonly SavedShell[]; closed: readonly string[] }): Promise<void> {
    for (const c of saved.closed) this.closed.add(c);
    for (const s of saved.shells) {
      const sh = new Shell(s.shell_id, s.cols, s.rows, this.redactor?.stream() ?? null, s.started_at);
      sh.restore(s);
      this.shells.set(sh.id, sh);
      if (s.state !== "running") continue;
      await this.follow(sh, this.agent.open({ op: "shell.adopt", shell_id: sh.id })).catch((err) => {
        log(`shell ${sh.id} was not adopted: ${(err as Error).message}`);
      });
    }
  }

  private async agentCall<Op extends ShellOp>(request: RequestOf<Op> & { op: Op }): Promise<ResultOf<Op>> {
    parseRequest(MESSAGE_TABLE[request.op].request, request);
    const upstream = this.agent.open(request);
    const timer = setTimeout(() => {
      upstream.abort(
        new PyroError("AGENT_UNRESPONSIVE", `the agent did not answer ${request.op} in time`, {
          hint: this.agent.hint,
        }),
      );
    }, AGENT_ANSWER_MS);
    try {
      return parseResult(request.op, await upstream.done);
    } finally {
      clearTimeout(timer);
    }
  }
}

function withoutOp<T extends { op: string }>(req: T): Omit<T, "op"> {
  const { op: _op, ...rest } = req;
  return rest;
}
