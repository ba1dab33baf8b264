/**
 * How tool results leave the MCP server: sizes, the text rendering, the error shape.
 *
 * Invariants:
 * - Each byte of output appears once in full: in `structuredContent`. The text `content` is
 *   a bounded rendering for the model: at most `text_budget_chars` characters in all (default
 *   TEXT_WINDOW), output cleaned of terminal control (cleanTerminalText) and, when longer, a
 *   head and a tail around one `[… N bytes omitted; read more with <exact call> …]` line
 *   (shapeOutput); byte counts and truncation are stated; base64 output is described, never
 *   dumped. Shells and service logs reuse shapeOutput.
 * - A response line stays under RESPONSE_BUDGET bytes (8 MiB: the official TypeScript
 *   client drops the connection on a line over 10 MiB). exec/run keep at most
 *   MAX_OUTPUT_BYTES per stream over MCP and reads at most MAX_READ_BYTES (max_output_bytes and
 *   max_bytes are clamped before the call, so the server never holds more); output that still does not fit once JSON-escaped is cut at the
 *   end and flagged `*_truncated` like any other truncation. A result that cannot be made to
 *   fit is refused with INPUT_TOO_LARGE (ask for less) rather than sent.
 */
import * as v from "valibot";
import { type ErrorShape, PyroError } from "../protocol/errors.ts";

/** Largest serialized JSON-RPC response (bytes). */
export const RESPONSE_BUDGET = 8 * 1024 * 1024;
/** Per-stream cap on exec/run output over MCP (bytes). */
export const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
/** Cap on `max_bytes` (file and disk reads, diff patch text) over MCP (bytes). */
export const MAX_READ_BYTES = 6 * 1024 * 1024;
/** Characters of output the text rendering shows (head and tail). */
export const TEXT_WINDOW = 16 * 1024;
/** Room kept for a text rendering of `budget` characters (JSON escapes one into at most 6 bytes) and the envelope. */
const textReserve = (budget: number) => 6 * budget + 8 * 1024;
/** exec_read over MCP: at most this many bytes per call (6 MiB once JSON-escaped at worst). */
export const MAX_EXEC_READ_BYTES = 1024 * 1024;

/** Output-carrying fields: [content, its truncation flag, its encoding field, its byte count]. */
const TRIMMABLE: Array<[string, string, string | null, string | null]> = [
  ["stdout", "stdout_truncated", "stdout_encoding", null],
  ["stderr", "stderr_truncated", "stderr_encoding", null],
  ["content", "truncated", "encoding", "bytes_read"],
  ["patch", "truncated", null, null],
];

/** Clamp a request's output caps to what one response can carry (so the server never holds more). */
export function clampInput<I extends Record<string, unknown>>(input: I): I {
  const out: Record<string, unknown> = { ...input };
  // a detached exec's output goes to its spool, not into this response
  if (
    typeof out.max_output_bytes === "number" &&
    out.max_output_bytes > MAX_OUTPUT_BYTES &&
    out.detach !== true
  )
    out.max_output_bytes = MAX_OUTPUT_BYTES;
  const maxRead = "exec_id" in out ? MAX_EXEC_READ_BYTES : MAX_READ_BYTES;
  if (typeof out.max_bytes === "number" && out.max_bytes > maxRead) out.max_bytes = maxRead;
  return out as I;
}

/** Split `total` over `sizes`: the small ones get all they need, the rest an equal share. */
function share(sizes: number[], total: number): number[] {
  const order = sizes.map((s, i) => [s, i] as const).sort((a, b) => a[0] - b[0]);
  const out = new Array<number>(sizes.length).fill(0);
  let left = Math.max(0, total);
  order.forEach(([size, i], k) => {
    out[i] = Math.min(size, Math.floor(left / (order.length - k)));
    left -= out[i] as number;
  });
  return out;
}

/**
 * Bytes of `s` as a JSON string body (quotes excluded), counted as JSON.stringify writes it,
 * without building it; with `limit`, the length of the longest prefix that fits instead.
 */
function jsonString(s: string, limit = Number.POSITIVE_INFINITY): { bytes: number; cut: number } {
  let bytes = 0;
  let i = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    let n = 1;
    let w = 1;
    if (c === 0x22 || c === 0x5c) w = 2;
    else if (c < 0x20) w = c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 2 : 6;
    else if (c < 0x80) w = 1;
    else if (c < 0x800) w = 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) [n, w] = [2, 4];
      else w = 6; // a lone surrogate is written escaped
    } else if (c >= 0xdc00 && c <= 0xdfff) w = 6;
    else w = 3;
    if (bytes + w > limit) return { bytes, cut: i };
    bytes += w;
    i += n;
  }
  return { bytes, cut: i };
}

/** Cut output fields so the whole result fits the response budget (see the header). */
export function fitBudget(out: Record<string, unknown>, textBudget = TEXT_WINDOW): Record<string, unknown> {
  const fields = TRIMMABLE.filter(([f]) => typeof out[f] === "string");
  const bare = { ...out };
  for (const [f] of fields) bare[f] = "";
  const sizes = fields.map(([f]) => jsonString(out[f] as string).bytes);
  const room = RESPONSE_BUDGET - textReserve(textBudget) - Buffer.byteLength(JSON.stringify(bare));
  if (sizes.reduce((a, b) => a + b, 0) <= room) return out;
  if (room < 0)
    throw new PyroError(
      "INPUT_TOO_LARGE",
      `the result exceeds the MCP response budget of ${RESPONSE_BUDGET} bytes`,
      { hint: "ask for less per call (a narrower path, a smaller max_bytes)" },
    );
  const allowed = share(sizes, room);
  const fitted = { ...out };
  fields.forEach(([f, flag, enc, count], i) => {
    const allow = allowed[i] as number;
    if ((sizes[i] as number) <= allow) return;
    const s = out[f] as string;
    const base64 = enc !== null && out[enc] === "base64";
    // base64 is cut on a 4-character group, so it still decodes to a prefix of the bytes
    const kept = base64 ? s.slice(0, Math.floor(allow / 4) * 4) : s.slice(0, jsonString(s, allow).cut);
    fitted[f] = kept;
    fitted[flag] = true;
    if (count !== null && typeof out[count] === "number")
      fitted[count] = Buffer.byteLength(kept, base64 ? "base64" : "utf8");
  });
  return fitted;
}

/** At most `max` characters of `s`: head and tail around a note saying where the rest is. */
function windowed(s: string, max: number, where: string): string {
  if (s.length <= max) return s;
  const half = Math.floor(max / 2);
  return `${s.slice(0, half)}\n[... ${s.length - 2 * half} characters omitted; the whole text is in ${where} ...]\n${s.slice(-half)}`;
}

// ---------------------------------------------------------------------------------------
// Output shaped for a model (docs/public-contract.md, "MCP text shaping")

/** Tools whose text is shaped output and that take `text_budget_chars` (MCP only). */
export const TEXT_BUDGET_TOOLS: readonly string[] = ["vm_run", "workspace_exec", "exec_read", "shell_read"];
export const MIN_TEXT_BUDGET = 1024;
export const MAX_TEXT_BUDGET = 262144;
export const textBudgetField = v.optional(
  v.pipe(
    v.number(),
    v.integer(),
    v.minValue(MIN_TEXT_BUDGET),
    v.maxValue(MAX_TEXT_BUDGET),
    v.description(
      `Most characters of this result's text rendering (default ${TEXT_WINDOW}): colours and control sequences are stripped, \\r progress lines show their final state, and longer output shows a head and a tail with the exact call that reads the omitted bytes. structuredContent always carries the raw bytes.`,
    ),
  ),
);

/** CSI, OSC (BEL or ST terminated), and the other two-byte and charset escape sequences. */
const ANSI_RE =
  /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()*+][0-9A-Za-z]|\x1b[@-Z\\^_`a-z{|}~=>78]|\x9b[0-?]*[ -/]*[@-~]/g;
const CONTROL_RE = /[\x00-\x08\x0b-\x1f\x7f]/g;

/** One line as a terminal would leave it: after the last `\r`, backspaces applied. */
function finalLine(line: string): string {
  let s = line.endsWith("\r") ? line.replace(/\r+$/, "") : line;
  const cr = s.lastIndexOf("\r");
  if (cr >= 0) s = s.slice(cr + 1);
  if (s.includes("\b")) {
    const out: string[] = [];
    for (const ch of s)
      if (ch === "\b") out.pop();
      else out.push(ch);
    s = out.join("");
  }
  return s.replace(CONTROL_RE, "");
}

/**
 * Terminal output as a model should read it: escape sequences (colours, cursor moves, titles)
 * stripped, each `\r`-rewritten line (progress bars) shown in its final state, backspaces
 * applied, other control characters dropped; newlines and tabs kept.
 */
export function cleanTerminalText(s: string): string {
  return s.replace(ANSI_RE, "").split("\n").map(finalLine).join("\n");
}

/** Raw `s` split after each newline (the pieces join back to `s`). */
function rawLines(s: string): string[] {
  const out: string[] = [];
  let at = 0;
  for (let nl = s.indexOf("\n"); nl >= 0; nl = s.indexOf("\n", at)) {
    out.push(s.slice(at, nl + 1));
    at = nl + 1;
  }
  if (at < s.length) out.push(s.slice(at));
  return out;
}

/** A cut of `s` at `i` that does not split a surrogate pair. */
const safeCut = (s: string, i: number) =>
  i > 0 && i < s.length && s.charCodeAt(i - 1) >= 0xd800 && s.charCodeAt(i - 1) <= 0xdbff ? i - 1 : i;

/** The longest raw prefix (whole lines, then part of one) whose cleaned text fits `room`. */
function rawHead(lines: string[], room: number): string {
  let out = "";
  for (const line of lines) {
    const n = cleanTerminalText(line).length;
    if (n <= room) {
      out += line;
      room -= n;
      continue;
    }
    return out + line.slice(0, safeCut(line, room));
  }
  return out;
}

/** The longest raw suffix (whole lines, then part of one) whose cleaned text fits `room`. */
function rawTail(lines: string[], room: number): string {
  let out = "";
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] as string;
    const n = cleanTerminalText(line).length;
    if (n <= room) {
      out = line + out;
      room -= n;
      continue;
    }
    return line.slice(safeCut(line, line.length - room)) + out;
  }
  return out;
}

/**
 * `raw` output shaped to at most `budget` characters: the whole of it cleaned
 * (cleanTerminalText) if that fits, else a head window and a tail window, cut on line
 * boundaries where possible, around one line `omission(fromByte, bytes)` naming the raw
 * UTF-8 bytes left out (offsets into `raw`) and how to read them.
 */
export function shapeOutput(
  raw: string,
  budget: number,
  omission: (fromByte: number, bytes: number) => string,
): string {
  const whole = cleanTerminalText(raw);
  if (whole.length <= budget) return whole;
  const total = Buffer.byteLength(raw);
  const lines = rawLines(raw);
  // the note's length depends on the numbers in it: size it with the largest they can be
  const room = Math.max(0, budget - omission(total, total).length - 2);
  const head = rawHead(lines, Math.floor(room / 2));
  let tail = rawTail(lines, Math.ceil(room / 2));
  if (head.length + tail.length > raw.length) tail = raw.slice(head.length);
  const headBytes = Buffer.byteLength(head);
  const omitted = total - headBytes - Buffer.byteLength(tail);
  return `${cleanTerminalText(head)}\n${omission(headBytes, omitted)}\n${cleanTerminalText(tail)}`;
}

const callText = (tool: string, args: Record<string, unknown>) => `${tool} ${JSON.stringify(args)}`;

export interface RenderOptions {
  /** characters the whole text may take (text_budget_chars) */
  budget?: number;
  /** the call's input, to name the exact call that reads more */
  input?: Record<string, unknown>;
}

/** One output stream of an exec/run result: shaped text, then its size and truncation line. */
function describeStream(
  out: Record<string, unknown>,
  name: "stdout" | "stderr",
  budget: number,
  input: Record<string, unknown>,
): string[] {
  const text = out[name];
  if (typeof text !== "string" || text === "") return [];
  const where = `structuredContent.${name}`;
  const base64 = out[`${name}_encoding`] === "base64";
  const bytes = Buffer.byteLength(text, base64 ? "base64" : "utf8");
  const rerun =
    typeof out.workspace_id === "string" && input.command !== undefined
      ? `, or page through it by running it detached: ${callText("workspace_exec", { workspace_id: out.workspace_id, command: JSON.stringify(input.command).length <= 200 ? input.command : "<the same command>", detach: true })}, then ${callText("exec_read", { workspace_id: out.workspace_id, exec_id: "<exec_id>", stream: name, offset: 0 })}`
      : "";
  const lines = base64
    ? [
        `${name}: ${bytes} bytes that are not UTF-8 text, base64-encoded in ${where} (${name}_encoding: base64)`,
      ]
    : [
        `${name}:`,
        shapeOutput(
          text,
          budget,
          (from, n) => `[… ${n} bytes omitted (from byte ${from}); read more with ${where}${rerun} …]`,
        ),
      ];
  lines.push(
    out[`${name}_truncated`]
      ? `[${name}: ${bytes} bytes kept; ${name} was truncated: the command wrote more than max_output_bytes (default 1 MiB; over MCP at most ${MAX_OUTPUT_BYTES} bytes per stream)${rerun ? "; run it detached to keep all of it (up to 1 GiB)" : "; to see all of it, redirect it to a file and read that in a workspace"}]`
      : `[${name}: ${bytes} bytes]`,
  );
  return lines;
}

/** The text of an exec_read result: the shaped window and the call that reads on. */
function renderRead(out: Record<string, any>, budget: number): string {
  const at = { workspace_id: out.workspace_id, exec_id: out.exec_id, stream: out.stream };
  const next = out.eof
    ? "end of stream"
    : `read on with ${callText("exec_read", { ...at, offset: out.next_offset })}${out.state === "running" ? " (the command is still running)" : ""}`;
  const head = `${out.stream} bytes ${out.offset}..${out.next_offset} of ${out.size_bytes} spooled; exec ${out.state}`;
  if (out.encoding === "base64")
    return `${head}\n${out.next_offset - out.offset} bytes that are not UTF-8 text, base64-encoded in structuredContent.data\n[${next}]`;
  const room = Math.max(256, budget - head.length - next.length - 4);
  const body = shapeOutput(
    out.data,
    room,
    (from, n) =>
      `[… ${n} bytes omitted; read more with ${callText("exec_read", { ...at, offset: out.offset + from, max_bytes: n })} …]`,
  );
  return `${head}\n${body}\n[${next}]`;
}

/**
 * The text of a shell_read result: where the output sits, the output shaped (raw reads: the
 * omission line names the shell_read that returns exactly the omitted characters; plain reads
 * are a rendered screen whose lines have no cursors, so it points at structuredContent), then
 * the call that reads on.
 */
function renderShellRead(out: Record<string, any>, budget: number): string {
  const at = { workspace_id: out.workspace_id, shell_id: out.shell_id };
  const ended = out.state === "exited" ? ` (exit_code ${out.exit_code})` : "";
  const head = `shell ${out.shell_id} ${out.state}${ended}; characters ${out.cursor}..${out.next_cursor} of ${out.output_chars}${out.truncated ? " (older output was dropped before cursor)" : ""}${out.plain ? ", rendered as screen text" : ""}`;
  const next = out.has_more
    ? `more output waits: ${callText("shell_read", { ...at, cursor: out.next_cursor, ...(out.plain ? { plain: true } : {}) })}`
    : `read what comes next with ${callText("shell_read", { ...at, cursor: out.next_cursor, wait_for_idle_ms: 500 })}`;
  const raw = Buffer.from(out.output);
  const chars = (from: number, to: number) => raw.subarray(from, to).toString().length;
  const room = Math.max(256, budget - head.length - next.length - 4);
  const body = shapeOutput(out.output, room, (from, n) =>
    out.plain
      ? `[… ${n} bytes omitted; the whole text is in structuredContent.output …]`
      : `[… ${n} bytes omitted; read more with ${callText("shell_read", { ...at, cursor: out.cursor + chars(0, from), max_chars: chars(from, from + n) })} …]`,
  );
  return `${head}\n${body}\n[${next}]`;
}

/** The text of a detached exec (start, wait, kill): its state and the calls that follow. */
function renderDetachedText(out: Record<string, any>): string {
  const at = { workspace_id: out.workspace_id, exec_id: out.exec_id };
  const state =
    out.state === "running"
      ? "running"
      : out.state === "exited"
        ? `exited with exit_code ${out.exit_code}${out.timed_out ? " (timed out)" : ""} after ${out.duration_ms} ms`
        : `lost (no exit code): ${out.end_reason}`;
  return [
    `exec ${out.exec_id}: ${state}${out.reused ? " (an existing exec with this idempotency_key; nothing new was run)" : ""}`,
    `stdout: ${out.stdout_bytes} bytes, stderr: ${out.stderr_bytes} bytes spooled${out.stdout_truncated || out.stderr_truncated ? " (spool cap reached: truncated)" : ""}`,
    `read: ${callText("exec_read", { ...at, stream: "stdout", offset: 0 })}`,
    out.state === "running" ? `wait: ${callText("exec_wait", { ...at, timeout_seconds: 30 })}` : "",
    "",
    JSON.stringify(out, null, 2),
  ]
    .filter((l, i) => l !== "" || i === 4)
    .join("\n");
}

/** The text `content` of a successful result: bounded, never a second copy of the output. */
export function renderText(out: Record<string, unknown>, opts: RenderOptions = {}): string {
  const budget = opts.budget ?? TEXT_WINDOW;
  if ("exec_id" in out && "data" in out) return renderRead(out, budget);
  if ("shell_id" in out && "next_cursor" in out && typeof out.output === "string")
    return renderShellRead(out, budget);
  if ("exec_id" in out && "state" in out)
    return windowed(renderDetachedText(out), budget, "structuredContent");
  // a service record or its logs: not a command's result, whatever its exit_code field says
  if ("service_name" in out) return windowed(JSON.stringify(out, null, 2), budget, "structuredContent");
  if ("exit_code" in out) {
    const head = `exit_code: ${out.exit_code}${out.timed_out ? " (timed out)" : ""}`;
    const sizes = (["stdout", "stderr"] as const).map((n) =>
      typeof out[n] === "string" && out[`${n}_encoding`] !== "base64" ? (out[n] as string).length : 0,
    );
    // room for the header and the size lines (each well under 700 characters)
    const [outWin, errWin] = share(sizes, Math.max(512, budget - head.length - 1600)) as [number, number];
    const input = opts.input ?? {};
    return [
      head,
      ...describeStream(out, "stdout", Math.max(outWin, 256), input),
      ...describeStream(out, "stderr", Math.max(errWin, 256), input),
    ].join("\n");
  }
  return windowed(JSON.stringify(out, null, 2), budget, "structuredContent");
}

/** A failed tool result: isError with {code, message, hint?, details?} (one shape for every failure). */
export function toolErrorResult(shape: ErrorShape & { hint?: string }): Record<string, unknown> {
  // The error travels as JSON text, not structuredContent: a tool's outputSchema describes
  // its result, and clients validate any structuredContent against it (errors included).
  return { isError: true, content: [{ type: "text", text: JSON.stringify(shape) }] };
}
