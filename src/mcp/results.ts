/**
 * How tool results leave the MCP server: sizes, the text rendering, the error shape.
 *
 * Invariants:
 * - Each byte of output appears once in full: in `structuredContent`. The text `content` is
 *   a bounded rendering for the model (at most TEXT_WINDOW characters of output, head and tail,
 *   saying where the rest is; base64 output is described, never dumped).
 * - A response line stays under RESPONSE_BUDGET bytes (8 MiB: the official TypeScript
 *   client drops the connection on a line over 10 MiB). exec/run keep at most
 *   MAX_OUTPUT_BYTES per stream over MCP and reads at most MAX_READ_BYTES (max_output_bytes and
 *   max_bytes are clamped before the call, so the server never holds more); output that still does not fit once JSON-escaped is cut at the
 *   end and flagged `*_truncated` like any other truncation. A result that cannot be made to
 *   fit is refused with INPUT_TOO_LARGE (ask for less) rather than sent.
 */
import { type ErrorShape, PyroError } from "../protocol/errors.ts";

/** Largest serialized JSON-RPC response (bytes). */
export const RESPONSE_BUDGET = 8 * 1024 * 1024;
/** Per-stream cap on exec/run output over MCP (bytes). */
export const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
/** Cap on `max_bytes` (file and disk reads, diff patch text) over MCP (bytes). */
export const MAX_READ_BYTES = 6 * 1024 * 1024;
/** Characters of output the text rendering shows (head and tail). */
export const TEXT_WINDOW = 16 * 1024;
/** Room kept for the text rendering (JSON escapes a character into at most 6 bytes) and the envelope. */
const TEXT_RESERVE = 6 * TEXT_WINDOW + 8 * 1024;

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
  if (typeof out.max_output_bytes === "number" && out.max_output_bytes > MAX_OUTPUT_BYTES)
    out.max_output_bytes = MAX_OUTPUT_BYTES;
  if (typeof out.max_bytes === "number" && out.max_bytes > MAX_READ_BYTES) out.max_bytes = MAX_READ_BYTES;
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
export function fitBudget(out: Record<string, unknown>): Record<string, unknown> {
  const fields = TRIMMABLE.filter(([f]) => typeof out[f] === "string");
  const bare = { ...out };
  for (const [f] of fields) bare[f] = "";
  const sizes = fields.map(([f]) => jsonString(out[f] as string).bytes);
  const room = RESPONSE_BUDGET - TEXT_RESERVE - Buffer.byteLength(JSON.stringify(bare));
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

function describeStream(out: Record<string, unknown>, name: "stdout" | "stderr", window: number): string[] {
  const text = out[name];
  if (typeof text !== "string" || text === "") return [];
  const where = `structuredContent.${name}`;
  const lines =
    out[`${name}_encoding`] === "base64"
      ? [
          `${name}: ${Buffer.byteLength(text, "base64")} bytes that are not UTF-8 text, base64-encoded in ${where} (${name}_encoding: base64)`,
        ]
      : [`${name}:\n${windowed(text, window, where)}`];
  if (out[`${name}_truncated`])
    lines.push(
      `[${name} was truncated: the command wrote more than max_output_bytes (default 1 MiB; over MCP at most ${MAX_OUTPUT_BYTES} bytes per stream); to see all of it, redirect it to a file under /workspace and page through it with exec, e.g. tail -c +OFFSET FILE | head -c COUNT]`,
    );
  return lines;
}

/** The text `content` of a successful result: bounded, never a second copy of the output. */
export function renderText(out: Record<string, unknown>): string {
  if ("exit_code" in out) {
    const sizes = (["stdout", "stderr"] as const).map((n) =>
      typeof out[n] === "string" && out[`${n}_encoding`] !== "base64" ? (out[n] as string).length : 0,
    );
    const [outWin, errWin] = share(sizes, TEXT_WINDOW) as [number, number];
    return [
      `exit_code: ${out.exit_code}${out.timed_out ? " (timed out)" : ""}`,
      ...describeStream(out, "stdout", Math.max(outWin, 2)),
      ...describeStream(out, "stderr", Math.max(errWin, 2)),
    ].join("\n");
  }
  return windowed(JSON.stringify(out, null, 2), TEXT_WINDOW, "structuredContent");
}

/** A failed tool result: isError with {code, message, hint?, details?} (one shape for every failure). */
export function toolErrorResult(shape: ErrorShape & { hint?: string }): Record<string, unknown> {
  // The error travels as JSON text, not structuredContent: a tool's outputSchema describes
  // its result, and clients validate any structuredContent against it (errors included).
  return { isError: true, content: [{ type: "text", text: JSON.stringify(shape) }] };
}
