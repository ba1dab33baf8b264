/**
 * The MCP stdio transport: newline-delimited JSON-RPC on stdin/stdout (replaces the SDK's
 * StdioServerTransport, whose read buffer closes the connection, and with it the server, on a
 * line over 10 MiB).
 *
 * Invariants:
 * - A request line holds at most MAX_REQUEST_BYTES (8 MiB, newline excluded). Memory held for
 *   one line never exceeds that plus one read chunk: an oversized line is dropped as it
 *   streams in, keeping only its first and last WINDOW bytes to find its id and method.
 * - Only the end of stdin closes the transport, once every request read before it has been
 *   answered (or cancelled), so `requests | pyro mcp serve` gets all its answers. An oversized line is answered with
 *   INPUT_TOO_LARGE (an isError tool result for tools/call, a JSON-RPC error otherwise); an
 *   unparsable line with a JSON-RPC parse error. Then reading goes on.
 * - If the id of an oversized line cannot be found in its head or tail windows, the error
 *   goes out with `id: null` (as JSON-RPC prescribes when the id is unknown); that client
 *   request then ends by the client's own timeout.
 * - Messages are written whole and in order; send() resolves once stdout accepted the bytes.
 */
import process from "node:process";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { type JSONRPCMessage, JSONRPCMessageSchema } from "@modelcontextprotocol/sdk/types.js";
import { PyroError } from "../protocol/errors.ts";

/** Largest request line accepted (bytes of UTF-8 JSON, newline excluded). */
export const MAX_REQUEST_BYTES = 8 * 1024 * 1024;
/** Bytes kept from each end of an oversized line to find its id and method. */
const WINDOW = 4096;
const NEWLINE = 0x0a;

type Id = string | number;
const ID = String.raw`(-?\d+|"(?:[^"\\]|\\.)*")`;
/** `"id": <scalar>` as the first or second member of the top-level object (Python SDK order). */
const HEAD_ID = new RegExp(String.raw`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*${ID}`);
/**
 * `"id": <scalar>` right before the final `}` (the TypeScript SDK's order). The closing brace
 * ends the top-level object and a scalar directly before it is that object's own member.
 */
const TAIL_ID = new RegExp(String.raw`[,{]\s*"id"\s*:\s*${ID}\s*\}\s*$`);
/** `"method": "..."` before any nested object or array opens (so it is top-level). */
const HEAD_METHOD = /^\s*\{[^{}[\]]*?"method"\s*:\s*"([^"\\]*)"/;

/** The id and method of a request line from its head and tail windows, where they show. */
export function locateRequest(
  head: string,
  tail: string,
): { id: Id | undefined; method: string | undefined } {
  const m = HEAD_ID.exec(head) ?? TAIL_ID.exec(tail.replace(/\r$/, ""));
  let id: Id | undefined;
  if (m) {
    try {
      id = JSON.parse(m[1] as string) as Id;
    } catch {
      id = undefined;
    }
  }
  return { id, method: HEAD_METHOD.exec(head)?.[1] };
}

/** A copy of the first or last WINDOW bytes of a sequence of buffers. */
function edge(bufs: Buffer[], side: "start" | "end"): Buffer {
  const picked: Buffer[] = [];
  let have = 0;
  for (let i = 0; i < bufs.length && have < WINDOW; i++) {
    const b = bufs[side === "start" ? i : bufs.length - 1 - i] as Buffer;
    if (side === "start") picked.push(b);
    else picked.unshift(b);
    have += b.length;
  }
  const all = Buffer.concat(picked);
  return Buffer.from(
    side === "start" ? all.subarray(0, WINDOW) : all.subarray(Math.max(0, all.length - WINDOW)),
  );
}

export class StdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private parts: Buffer[] = [];
  private size = 0;
  /** set while an oversized line streams past */
  private dropping: { head: Buffer; tail: Buffer; bytes: number } | null = null;
  private closed = false;
  private ended = false;
  /** ids of requests handed to the server and not answered yet */
  private readonly pending = new Set<Id>();

  private readonly stdin: NodeJS.ReadableStream;
  private readonly stdout: NodeJS.WritableStream;
  private readonly maxBytes: number;
  private readonly toolError: (e: PyroError) => Record<string, unknown>;

  /** toolError shapes a failed tools/call result (the server's one error shape). */
  constructor(opts: {
    toolError: (e: PyroError) => Record<string, unknown>;
    stdin?: NodeJS.ReadableStream;
    stdout?: NodeJS.WritableStream;
    maxBytes?: number;
  }) {
    this.toolError = opts.toolError;
    this.stdin = opts.stdin ?? process.stdin;
    this.stdout = opts.stdout ?? process.stdout;
    this.maxBytes = opts.maxBytes ?? MAX_REQUEST_BYTES;
  }

  async start(): Promise<void> {
    this.stdin.on("data", this.onData);
    this.stdin.on("end", this.onEnd);
    this.stdin.on("error", this.onStreamError);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stdin.off("data", this.onData);
    this.stdin.off("end", this.onEnd);
    this.stdin.off("error", this.onStreamError);
    this.parts = [];
    this.dropping = null;
    this.onclose?.();
  }

  async send(message: JSONRPCMessage): Promise<void> {
    await this.write(message);
    const id = (message as { id?: Id }).id;
    if (!("method" in message) && id !== undefined) this.settle(id);
  }

  private settle(id: Id): void {
    this.pending.delete(id);
    if (this.ended && this.pending.size === 0) void this.close();
  }

  private write(message: unknown): Promise<void> {
    return new Promise((resolve) => {
      if (this.stdout.write(`${JSON.stringify(message)}\n`)) resolve();
      else this.stdout.once("drain", resolve);
    });
  }

  private onData = (chunk: Buffer | string): void => {
    const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    let from = 0;
    while (from < buf.length) {
      const nl = buf.indexOf(NEWLINE, from);
      this.take(buf.subarray(from, nl === -1 ? buf.length : nl));
      if (nl === -1) break;
      this.endLine();
      from = nl + 1;
    }
  };

  private onEnd = (): void => {
    if (this.size > 0 || this.dropping) this.endLine(); // a last line without newline
    this.ended = true;
    if (this.pending.size === 0) void this.close();
  };

  private onStreamError = (err: Error): void => {
    this.onerror?.(err);
  };

  private take(piece: Buffer): void {
    if (piece.length === 0) return;
    const d = this.dropping;
    if (d) {
      d.bytes += piece.length;
      d.tail = edge([d.tail, piece], "end");
      return;
    }
    if (this.size + piece.length <= this.maxBytes) {
      this.parts.push(piece);
      this.size += piece.length;
      return;
    }
    // over the limit: keep the two windows, drop everything else up to the newline
    const all = [...this.parts, piece];
    this.dropping = { head: edge(all, "start"), tail: edge(all, "end"), bytes: this.size + piece.length };
    this.parts = [];
    this.size = 0;
  }

  private endLine(): void {
    const d = this.dropping;
    if (d) {
      this.dropping = null;
      void this.refuseOversized(d.head.toString("utf8"), d.tail.toString("utf8"), d.bytes);
      return;
    }
    const line = Buffer.concat(this.parts, this.size).toString("utf8");
    this.parts = [];
    this.size = 0;
    if (line.trim() === "") return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (err) {
      void this.write({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } });
      this.onerror?.(err as Error);
      return;
    }
    const parsed = JSONRPCMessageSchema.safeParse(json);
    if (parsed.success) {
      const m = parsed.data as { method?: string; id?: Id; params?: { requestId?: Id } };
      if (m.method !== undefined && m.id !== undefined) this.pending.add(m.id);
      if (m.method === "notifications/cancelled" && m.params?.requestId !== undefined)
        queueMicrotask(() => this.settle(m.params?.requestId as Id));
      this.onmessage?.(parsed.data);
      return;
    }
    const id = (json as { id?: unknown } | null)?.id;
    if (typeof id === "string" || typeof id === "number")
      void this.write({ jsonrpc: "2.0", id, error: { code: -32600, message: "Invalid Request" } });
    this.onerror?.(new Error(`invalid JSON-RPC message: ${parsed.error.message}`));
  }

  private refuseOversized(head: string, tail: string, bytes: number): Promise<void> {
    const { id, method } = locateRequest(head, tail);
    const err = new PyroError(
      "INPUT_TOO_LARGE",
      `request of ${bytes} bytes exceeds the MCP request limit of ${this.maxBytes} bytes`,
      {
        details: { bytes, limit: this.maxBytes },
        hint: "send less per call: write a large file in parts, or seed/sync it from a host directory",
      },
    );
    this.onerror?.(new Error(`refused an oversized request line (${bytes} bytes)`));
    if (id !== undefined && method === "tools/call")
      return this.write({ jsonrpc: "2.0", id, result: this.toolError(err) });
    return this.write({
      jsonrpc: "2.0",
      id: id ?? null,
      error: { code: -32600, message: `${err.code}: ${err.message}`, data: err.toJSON() },
    });
  }
}
