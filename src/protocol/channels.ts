/**
 * ByteChannel adapters that need nothing but Bun: in-memory pairs, process pipes, and Bun
 * sockets (UNIX, vsock) with a write queue. Listener bookkeeping is ChannelListeners'.
 */
import type { Socket, SocketHandler } from "bun";
import { type ByteChannel, ChannelListeners } from "./channel.ts";

class PairEnd extends ChannelListeners implements ByteChannel {
  peer!: PairEnd;
  write(bytes: Uint8Array): void {
    if (this.closed) return;
    const copy = bytes.slice();
    queueMicrotask(() => this.peer.emitData(copy));
  }
  close(): void {
    queueMicrotask(() => {
      this.emitClose();
      this.peer.emitClose();
    });
  }
}

/** Two connected in-memory channels (tests, in-process host compat). Delivery is async like a socket. */
export function channelPair(): [ByteChannel, ByteChannel] {
  const a = new PairEnd();
  const b = new PairEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

interface Writer {
  write(b: Uint8Array): unknown;
  flush?(): unknown;
  end?(): unknown;
}

/**
 * A channel over a readable byte stream and a writer (child process stdio, or our own
 * stdin/stdout when the agent is spawned by the host backend).
 */
class StreamChannel extends ChannelListeners implements ByteChannel {
  // pauseReading() stops pulling from the stream, so the pipe fills and the writer blocks.
  private resume: (() => void) | null = null;
  private paused: Promise<void> | null = null;
  // Bytes the writer accepted but has not yet handed to the OS: a Bun FileSink returns a
  // promise from write() when it had to buffer. Bulk senders pause on this (flow control).
  private pending = 0;

  constructor(
    readable: ReadableStream<Uint8Array>,
    private readonly writer: Writer,
  ) {
    super();
    this.pump(readable);
  }

  private async pump(readable: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of readable) {
        this.emitData(chunk);
        if (this.paused) await this.paused;
      }
      this.emitClose();
    } catch (err) {
      this.emitClose(err as Error);
    }
  }

  get bufferedBytes(): number {
    return this.pending;
  }

  pauseReading(): void {
    this.paused ??= new Promise((r) => {
      this.resume = r;
    });
  }

  resumeReading(): void {
    const r = this.resume;
    this.paused = null;
    this.resume = null;
    r?.();
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    try {
      const r = this.writer.write(bytes);
      // Always flush: a FileSink holds small writes in its own buffer until flushed, and
      // skipping it while a write is pending let later frames overtake earlier ones.
      this.writer.flush?.();
      if (r instanceof Promise) {
        this.pending += bytes.byteLength;
        r.then(
          () => {
            this.pending -= bytes.byteLength;
          },
          (err) => this.emitClose(err as Error),
        );
      }
    } catch (err) {
      this.emitClose(err as Error);
    }
  }

  close(): void {
    try {
      this.writer.end?.();
    } catch {}
    this.emitClose();
  }
}

export function streamChannel(readable: ReadableStream<Uint8Array>, writer: Writer): ByteChannel {
  return new StreamChannel(readable, writer);
}

/**
 * One Bun socket (UNIX or vsock, connected or accepted) as a ByteChannel. Bun's
 * `socket.write` writes what the kernel takes right now and returns the count, so the rest
 * is queued here (copied: the caller may reuse its buffer) and flushed on `drain`.
 * close() flushes the queue, then ends the stream; onClose fires once the socket is gone.
 */
export class SocketChannel extends ChannelListeners implements ByteChannel {
  private queue: Uint8Array[] = [];
  private queued = 0;
  private ending = false;

  constructor(private readonly socket: Socket<SocketChannel>) {
    super();
  }

  get bufferedBytes(): number {
    return this.queued;
  }

  /** Flow control: stop reading so the peer's writes block in the kernel. */
  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  write(bytes: Uint8Array): void {
    // After close the peer is gone and onClose has fired (or will): drop, like a closed pipe.
    if (this.closed || this.ending || bytes.length === 0) return;
    if (this.queue.length > 0) {
      this.enqueue(bytes.slice());
      return;
    }
    const n = this.socket.write(bytes);
    if (n < 0) return; // closing; the close handler reports it
    if (n < bytes.length) this.enqueue(bytes.slice(n));
  }

  private enqueue(bytes: Uint8Array): void {
    this.queue.push(bytes);
    this.queued += bytes.length;
  }

  /** Write what the kernel takes of the queue (on `drain`); end the stream once empty if closing. */
  flush(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const n = this.socket.write(head);
      if (n < 0) return;
      this.queued -= n;
      if (n < head.length) {
        this.queue[0] = head.subarray(n);
        return;
      }
      this.queue.shift();
    }
    if (this.ending) this.socket.end();
  }

  close(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    if (this.queue.length === 0) this.socket.end();
  }

  /** The socket is gone: drop the queue and tell the listeners. */
  finish(err?: Error): void {
    this.queue = [];
    this.queued = 0;
    this.emitClose(err);
  }
}

/**
 * Bun socket handlers that make each socket's `data` a SocketChannel (for Bun.connect and
 * Bun.listen alike); `onOpen` gets the channel as soon as the socket is open.
 */
export function socketChannelHandlers(onOpen?: (ch: SocketChannel) => void): SocketHandler<SocketChannel> {
  return {
    // Plain Uint8Array chunks: no Buffer wrapper per read.
    binaryType: "uint8array",
    open(s) {
      s.data = new SocketChannel(s);
      onOpen?.(s.data);
    },
    data: (s, bytes: Uint8Array) => s.data.emitData(bytes),
    drain: (s) => s.data.flush(),
    close: (s, err) => s.data?.finish(err),
    error: (s, err) => s.data?.fail(err),
  };
}
