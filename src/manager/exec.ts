/**
 * Turning an agent exec stream into the contract's exec result.
 * Output is binary-safe: a stream whose kept bytes are UTF-8 (without NUL bytes, the same rule
 * as file reads) is returned as text with `*_encoding: "utf8"`; any other is base64 with
 * `*_encoding: "base64"`. The field decides, never a guess by the reader; decoding a result's
 * stream with its encoding gives back exactly the bytes kept (a character cut by truncation
 * at the end is dropped whole, and the stream is then flagged truncated anyway).
 */
import { call, type RequestOf, type ResultOf } from "../protocol/call.ts";
import type { Connection, StreamEvent } from "../protocol/connection.ts";
import { encodingHint } from "../protocol/encoding.ts";
import { PyroError } from "../protocol/errors.ts";
import { Channel } from "../protocol/frame.ts";
import { DEFAULT_MAX_OUTPUT_BYTES } from "../protocol/limits.ts";
import type { Accelerator, BackendName } from "../vmm/types.ts";

export const DEFAULT_EXEC_TIMEOUT_SECONDS = 30;

export interface ExecInput {
  command: string | string[];
  cwd?: string;
  env?: Record<string, string>;
  timeout_seconds?: number;
  max_output_bytes?: number;
  /** secret name → environment variable (the agent fills in the value) */
  secret_env?: Record<string, string>;
}

export type OutputEncoding = "utf8" | "base64";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** One output stream as it goes into a result (see the header for the rule). */
export function encodeOutput(
  bytes: Uint8Array,
  truncated: boolean,
): { text: string; encoding: OutputEncoding } {
  if (encodingHint(bytes, truncated, false) === "utf8") {
    // a truncated stream may end inside a character: drop its (at most 3) bytes
    for (let trim = 0; trim <= (truncated ? 3 : 0) && trim <= bytes.length; trim++) {
      try {
        return { text: utf8.decode(bytes.subarray(0, bytes.length - trim)), encoding: "utf8" };
      } catch {}
    }
  }
  return {
    text: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64"),
    encoding: "base64",
  };
}

export interface ExecResult {
  exit_code: number;
  stdout: string;
  stderr: string;
  stdout_truncated: boolean;
  stderr_truncated: boolean;
  /** how `stdout` is written: "utf8" text, or "base64" for bytes that are not UTF-8 */
  stdout_encoding: OutputEncoding;
  stderr_encoding: OutputEncoding;
  timed_out: boolean;
  duration_ms: number;
  execution_mode: "guest" | "host_compat";
  backend: BackendName;
  accelerator: Accelerator;
}

/** Bytes kept per stream come from `max_output_bytes` (the agent drops and flags the rest). */
export function execRequest(input: ExecInput): RequestOf<"exec"> {
  const timeout = input.timeout_seconds ?? DEFAULT_EXEC_TIMEOUT_SECONDS;
  if (!(timeout > 0)) throw new PyroError("INVALID_INPUT", "timeout_seconds must be positive");
  const req: RequestOf<"exec"> = {
    op: "exec",
    timeout_ms: Math.round(timeout * 1000),
    max_output_bytes: input.max_output_bytes ?? DEFAULT_MAX_OUTPUT_BYTES,
  };
  if (Array.isArray(input.command)) {
    if (input.command.length === 0) throw new PyroError("INVALID_INPUT", "command must not be empty");
    req.argv = input.command;
  } else {
    if (input.command.trim() === "") throw new PyroError("INVALID_INPUT", "command must not be empty");
    req.command = input.command;
  }
  if (input.cwd) req.cwd = input.cwd;
  if (input.env) req.env = input.env;
  if (input.secret_env && Object.keys(input.secret_env).length) req.secret_env = input.secret_env;
  return req;
}

/** Collects output chunks; optional live callbacks stream them to a terminal. */
export class OutputCollector {
  private out: Uint8Array[] = [];
  private err: Uint8Array[] = [];
  constructor(
    private readonly live?: { stdout?: (b: Uint8Array) => void; stderr?: (b: Uint8Array) => void },
  ) {}

  onEvent = (e: StreamEvent): void => {
    if (e.kind !== "data") return;
    if (e.channel === Channel.STDOUT) {
      this.out.push(e.bytes);
      this.live?.stdout?.(e.bytes);
    } else if (e.channel === Channel.STDERR) {
      this.err.push(e.bytes);
      this.live?.stderr?.(e.bytes);
    }
  };

  bytes(which: "stdout" | "stderr"): Uint8Array {
    const parts = which === "stdout" ? this.out : this.err;
    return parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts);
  }
}

export function shapeExecResult(
  raw: ResultOf<"exec">,
  out: OutputCollector,
  where: { backend: BackendName; accelerator: Accelerator },
): ExecResult {
  const { stdout_truncated, stderr_truncated } = raw;
  const stdout = encodeOutput(out.bytes("stdout"), stdout_truncated);
  const stderr = encodeOutput(out.bytes("stderr"), stderr_truncated);
  return {
    exit_code: raw.exit_code,
    stdout: stdout.text,
    stderr: stderr.text,
    stdout_truncated,
    stderr_truncated,
    stdout_encoding: stdout.encoding,
    stderr_encoding: stderr.encoding,
    timed_out: raw.timed_out,
    duration_ms: raw.duration_ms,
    execution_mode: where.backend === "host" ? "host_compat" : "guest",
    backend: where.backend,
    accelerator: where.accelerator,
  };
}

export async function execOn(
  conn: Connection,
  input: ExecInput,
  where: { backend: BackendName; accelerator: Accelerator },
  live?: { stdout?: (b: Uint8Array) => void; stderr?: (b: Uint8Array) => void },
): Promise<ExecResult> {
  const out = new OutputCollector(live);
  const raw = await call(conn, execRequest(input), { onEvent: out.onEvent });
  return shapeExecResult(raw, out, where);
}
