/**
 * Streams multiplexed over one ByteChannel. A client opens a stream with a JSON request;
 * both sides may then send data frames; the server ends the stream with one terminal
 * `result` or `error` frame (END flag). Used by CLI→supervisor, supervisor→agent and the
 * agent itself, so there is exactly one implementation of the wire.
 */
import type { ByteChannel } from "./channel.ts";
import { type ErrorCode, errorFromShape, PyroError, toPyroError } from "./errors.ts";
import {
  Channel,
  channelOf,
  decodeJsonPayload,
  encodeFrame,
  encodeJsonFrame,
  Flag,
  type Frame,
  FrameDecoder,
  MAX_FRAME_PAYLOAD,
  makeFlags,
} from "./frame.ts";
import { AsyncQueue } from "./queue.ts";

/** Bulk senders pause above this many buffered bytes. */
export const WRITE_HIGH_WATER = 4 * 1024 * 1024;

export type StreamEvent =
  | { kind: "json"; message: Record<string, unknown> }
  | { kind: "data"; channel: number; bytes: Uint8Array };

/** Split large buffers into frames no bigger than the protocol allows. */
function* chunks(bytes: Uint8Array): Generator<Uint8Array> {
  for (let off = 0; off < bytes.byteLength; off += MAX_FRAME_PAYLOAD) {
    yield bytes.subarray(off, Math.min(off + MAX_FRAME_PAYLOAD, bytes.byteLength));
  }
}

abstract class StreamBase {
  /** Events other than the opening request and the terminal message. */
  readonly events = new AsyncQueue<StreamEvent>();
  protected finished = false;
  constructor(
    readonly id: number,
    protected readonly conn: Connection,
  ) {}

  sendData(bytes: Uint8Array, channel: number = Channel.INPUT): void {
    if (this.finished) return;
    for (const part of chunks(bytes)) {
      this.conn.writeFrame({ stream: this.id, flags: makeFlags({ channel }), payload: part });
    }
  }

  sendJson(message: Record<string, unknown>): void {
    if (this.finished) return;
    this.conn.writeRaw(encodeJsonFrame(this.id, message));
  }

  /** Resolves when the connection's write buffer has room again (bulk senders await it). */
  writable(limit?: number): Promise<void> {
    return this.conn.writable(limit);
  }
}

/** Client side of one stream. */
export class ClientStream extends StreamBase {
  private resolveDone!: (m: Record<string, unknown>) => void;
  private rejectDone!: (e: PyroError) => void;
  /** Resolves with the terminal `result` message; rejects with the `error` as PyroError. */
  readonly done: Promise<Record<string, unknown>>;
  private inputEnded = false;

  constructor(id: number, conn: Connection) {
    super(id, conn);
    this.done = new Promise((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    // Avoid unhandled-rejection noise when the caller only consumes events.
    this.done.catch(() => {});
  }

  /** End the client→server direction (stdin, upload). */
  endInput(): void {
    if (this.inputEnded || this.finished) return;
    this.inputEnded = true;
    this.conn.writeFrame({ stream: this.id, flags: makeFlags({ end: true }), payload: new Uint8Array(0) });
  }

  /** @internal */
  receive(frame: Frame): void {
    if (this.finished) return;
    if (frame.flags & Flag.JSON) {
      const message = decodeJsonPayload(frame.payload) as Record<string, unknown>;
      if (frame.flags & Flag.END) {
        this.finish();
        if (message?.type === "error") this.rejectDone(errorFromShape(message));
        else {
          // `type` frames the message on the wire; the result itself is the rest
          const { type: _type, ...result } = message ?? {};
          this.resolveDone(result);
        }
        return;
      }
      this.events.push({ kind: "json", message });
    } else {
      if (frame.payload.byteLength > 0)
        this.events.push({ kind: "data", channel: channelOf(frame.flags), bytes: frame.payload });
      if (frame.flags & Flag.END) {
        this.finish();
        this.rejectDone(new PyroError("PROTOCOL_ERROR", "stream ended without a result"));
      }
    }
  }

  /**
   * Stop waiting for this stream: `done` rejects with `err` and frames that arrive for it
   * later are dropped, so an abandoned call never wedges the connection.
   */
  abort(err: PyroError): void {
    if (this.finished) return;
    this.finish();
    this.rejectDone(err);
  }

  private finish(): void {
    this.finished = true;
    this.events.end();
    this.conn.forget(this.id);
  }
}

/** Server side of one stream: the request plus what the client sends after it. */
export class ServerStream extends StreamBase {
  /** Channel-0 data the client sends after the request, ended by its END frame. */
  readonly input = new AsyncQueue<Uint8Array>();
  /** Client-side END was seen or the connection dropped. */
  clientGone = false;
  private controlHandlers: Array<(m: Record<string, unknown>) => void> = [];
  private closeHandlers: Array<() => void> = [];

  constructor(
    id: number,
    conn: Connection,
    readonly request: Record<string, unknown>,
  ) {
    super(id, conn);
  }

  /** JSON messages sent by the client on this stream after the request (e.g. signal). */
  onControl(cb: (m: Record<string, unknown>) => void): void {
    this.controlHandlers.push(cb);
  }

  /** Called if the connection drops before the stream finished. */
  onAbandon(cb: () => void): void {
    this.closeHandlers.push(cb);
  }

  get isFinished(): boolean {
    return this.finished;
  }

  /** The terminal result; one that cannot be framed (over MAX_FRAME_PAYLOAD) ends the stream with that error instead. */
  result(message: Record<string, unknown>): void {
    if (this.finished) return;
    let frame: Uint8Array;
    try {
      frame = encodeJsonFrame(this.id, { type: "result", ...message }, true);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.finished = true;
    this.conn.writeRaw(frame);
    this.conn.forget(this.id);
  }

  fail(err: unknown): void {
    if (this.finished) return;
    const e = toPyroError(err);
    this.finished = true;
    const shape: Record<string, unknown> = { type: "error", code: e.code, message: e.message };
    if (e.details) shape.details = e.details;
    if (e.hint) shape.hint = e.hint;
    this.conn.writeRaw(encodeJsonFrame(this.id, shape, true));
    this.conn.forget(this.id);
  }

  /** @internal */
  receive(frame: Frame): void {
    if (frame.flags & Flag.JSON) {
      const m = decodeJsonPayload(frame.payload);
      // Control messages are objects; anything else is a confused peer, not a reason to drop the connection.
      if (m && typeof m === "object" && !Array.isArray(m)) {
        for (const h of this.controlHandlers) {
          try {
            h(m as Record<string, unknown>);
          } catch (err) {
            this.fail(err);
          }
        }
      }
    } else if (frame.payload.byteLength > 0) {
      this.input.push(frame.payload);
    }
    if (frame.flags & Flag.END) {
      this.input.end();
    }
  }

  /** @internal */
  abandon(): void {
    this.clientGone = true;
    this.input.fail(new PyroError("GUEST_UNREACHABLE", "client went away"));
    for (const h of this.closeHandlers) h();
  }
}

export interface ConnectionOptions {
  /** Server role: called for each new stream's request. */
  onStream?: (stream: ServerStream) => void;
  /** Code used when the peer vanishes while a client stream waits. */
  lostCode?: ErrorCode;
  lostMessage?: string;
}

export class Connection {
  private readonly decoder = new FrameDecoder();
  private readonly clientStreams = new Map<number, ClientStream>();
  private readonly serverStreams = new Map<number, ServerStream>();
  private nextId = 1;
  private highestOpened = 0;
  private closed = false;
  private closeHandlers: Array<(err?: Error) => void> = [];

  constructor(
    private readonly channel: ByteChannel,
    private readonly opts: ConnectionOptions = {},
  ) {
    channel.onData((bytes) => this.onBytes(bytes));
    channel.onClose((reason) => this.shutdown(reason));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  onClose(cb: (err?: Error) => void): void {
    if (this.closed) cb();
    else this.closeHandlers.push(cb);
  }

  /** Open a stream with a request. */
  open(request: Record<string, unknown>): ClientStream {
    if (this.closed) {
      const s = new ClientStream(0, this);
      s.abort(this.lostError());
      return s;
    }
    const id = this.nextId;
    this.nextId = this.nextId >= 0x7fffffff ? 1 : this.nextId + 1;
    const stream = new ClientStream(id, this);
    this.clientStreams.set(id, stream);
    this.writeRaw(encodeJsonFrame(id, request));
    return stream;
  }

  /** Open, send optional input, await the result; data events go to onData. */
  async call(
    request: Record<string, unknown>,
    opts: { input?: Uint8Array | AsyncIterable<Uint8Array>; onEvent?: (e: StreamEvent) => void } = {},
  ): Promise<Record<string, unknown>> {
    const s = this.open(request);
    const pump = (async () => {
      for await (const e of s.events) opts.onEvent?.(e);
    })();
    if (opts.input !== undefined) {
      if (opts.input instanceof Uint8Array) s.sendData(opts.input);
      else
        for await (const part of opts.input) {
          s.sendData(part);
          await this.writable();
        }
      s.endInput();
    }
    const result = await s.done;
    await pump;
    return result;
  }

  close(): void {
    this.channel.close();
    this.shutdown();
  }

  /** The transport (flow control needs it: pause/resume, buffered bytes). */
  get transport(): ByteChannel {
    return this.channel;
  }

  /**
   * Wait until the transport's write buffer is below `limit`: senders of bulk data
   * (uploads, exports) call this between chunks so memory stays bounded.
   */
  async writable(limit = WRITE_HIGH_WATER): Promise<void> {
    while (!this.closed && (this.channel.bufferedBytes ?? 0) > limit) await Bun.sleep(2);
  }

  /** @internal */
  writeFrame(frame: Frame): void {
    this.writeRaw(encodeFrame(frame));
  }

  /** @internal */
  writeRaw(bytes: Uint8Array): void {
    if (this.closed) return;
    this.channel.write(bytes);
  }

  /** @internal */
  forget(id: number): void {
    this.clientStreams.delete(id);
    this.serverStreams.delete(id);
  }

  private lostError(): PyroError {
    return new PyroError(
      this.opts.lostCode ?? "GUEST_UNREACHABLE",
      this.opts.lostMessage ?? "connection to the agent was lost",
    );
  }

  private onBytes(bytes: Uint8Array): void {
    if (this.closed) return;
    let frames: Frame[];
    try {
      frames = this.decoder.push(bytes);
    } catch (err) {
      // A corrupt peer gets nothing more from us: drop the whole connection.
      this.shutdown(err as Error);
      this.channel.close();
      return;
    }
    for (const f of frames) {
      try {
        this.dispatch(f);
      } catch (err) {
        this.shutdown(err as Error);
        this.channel.close();
        return;
      }
    }
  }

  private dispatch(f: Frame): void {
    const client = this.clientStreams.get(f.stream);
    if (client) {
      client.receive(f);
      return;
    }
    const server = this.serverStreams.get(f.stream);
    if (server) {
      server.receive(f);
      return;
    }
    if (!this.opts.onStream) return; // late frame for a finished stream: ignore
    if (!(f.flags & Flag.JSON)) return; // data for a stream we already finished
    // Clients number streams upward: a JSON frame for an id at or below the highest one
    // seen belongs to a stream that already finished (a late signal), never a new request.
    if (f.stream <= this.highestOpened && this.highestOpened - f.stream < 0x40000000) return;
    this.highestOpened = f.stream;
    const request = decodeJsonPayload(f.payload);
    if (!request || typeof request !== "object" || Array.isArray(request)) {
      throw new PyroError("PROTOCOL_ERROR", "stream must open with a JSON object");
    }
    const stream = new ServerStream(f.stream, this, request as Record<string, unknown>);
    this.serverStreams.set(f.stream, stream);
    if (f.flags & Flag.END) stream.input.end();
    this.opts.onStream(stream);
  }

  private shutdown(reason?: Error): void {
    if (this.closed) return;
    this.closed = true;
    const lost = reason instanceof PyroError ? reason : this.lostError();
    for (const s of [...this.clientStreams.values()]) s.abort(lost);
    for (const s of [...this.serverStreams.values()]) s.abandon();
    this.clientStreams.clear();
    this.serverStreams.clear();
    for (const h of this.closeHandlers.splice(0)) h(reason);
  }
}
