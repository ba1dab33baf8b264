/**
 * A ByteChannel over a UNIX stream socket: QEMU's virtio-serial chardev (and Firecracker's
 * vsock UDS) are plain UNIX sockets on the host. Bun's `socket.write` writes what the kernel
 * takes right now and returns the count, so the rest is queued here and flushed on `drain`.
 */
import type { Socket } from "bun";
import { PyroError } from "../protocol/errors.ts";
import type { ByteChannel } from "./types.ts";

export interface UnixChannelOptions {
  /** First retry delay; doubles up to `maxRetryDelayMs`. */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** Stop retrying early (e.g. the VMM exited); the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** ByteChannel plus the size of its write queue, for callers that want to pace themselves. */
export interface UnixByteChannel extends ByteChannel {
  readonly bufferedBytes: number;
}

// The socket path not existing yet (VMM still starting) or nobody listening yet: retry.
const RETRYABLE = new Set(["ENOENT", "ECONNREFUSED", "EAGAIN"]);

/**
 * Connect to a UNIX socket, retrying until `deadlineMs` — an absolute time on the
 * `Date.now()` scale, not a duration — and wrap it as a ByteChannel.
 */
export async function connectUnixChannel(
  path: string,
  deadlineMs: number,
  opts: UnixChannelOptions = {},
): Promise<UnixByteChannel> {
  let delay = opts.retryDelayMs ?? 10;
  const maxDelay = opts.maxRetryDelayMs ?? 200;
  let attempts = 0;
  for (;;) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    attempts++;
    const channel = new UnixChannel();
    try {
      await Bun.connect({ unix: path, socket: channel.handlers() });
      return channel;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException)?.code ?? "";
      const left = deadlineMs - Date.now();
      if (!RETRYABLE.has(code) || left <= 0) {
        throw new PyroError("GUEST_UNREACHABLE", `cannot connect to ${path}: ${code || String(err)}`, {
          details: { path, attempts, error: code || String(err), deadlineMs },
          cause: err,
        });
      }
      await sleep(Math.min(delay, left), opts.signal);
      delay = Math.min(delay * 2, maxDelay);
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

class UnixChannel implements UnixByteChannel {
  private socket: Socket<undefined> | null = null;
  private queue: Uint8Array[] = [];
  private queued = 0;
  private ending = false;
  private closed = false;
  private closeReason: Error | undefined;
  private dataCbs: ((bytes: Uint8Array) => void)[] = [];
  private closeCbs: ((reason?: Error) => void)[] = [];
  // Bytes that arrive before anyone listens (the agent may speak first) wait here.
  private early: Uint8Array[] = [];

  get bufferedBytes(): number {
    return this.queued;
  }

  /** Flow control: stop reading so the peer's writes block in the kernel. */
  pauseReading(): void {
    this.socket?.pause();
  }

  resumeReading(): void {
    this.socket?.resume();
  }

  handlers() {
    return {
      // Plain Uint8Array chunks: no Buffer wrapper per read.
      binaryType: "uint8array" as const,
      open: (socket: Socket<undefined>) => {
        this.socket = socket;
      },
      data: (_socket: Socket<undefined>, bytes: Uint8Array) => {
        if (this.dataCbs.length === 0) this.early.push(bytes);
        else for (const cb of this.dataCbs) cb(bytes);
      },
      drain: () => this.flush(),
      close: (_socket: Socket<undefined>, error?: Error) => this.finish(error),
      error: (_socket: Socket<undefined>, error: Error) => {
        this.closeReason ??= error;
      },
    };
  }

  write(bytes: Uint8Array): void {
    // After close the peer is gone and onClose has fired (or will): drop, like a closed pipe.
    if (this.closed || this.ending || !this.socket || bytes.length === 0) return;
    if (this.queue.length > 0) {
      this.enqueue(bytes.slice());
      return;
    }
    const n = this.socket.write(bytes);
    if (n < 0) return; // closing; the close handler reports it
    // Copy the remainder: the caller may reuse its buffer once write() returns.
    if (n < bytes.length) this.enqueue(bytes.slice(n));
  }

  private enqueue(bytes: Uint8Array): void {
    this.queue.push(bytes);
    this.queued += bytes.length;
  }

  private flush(): void {
    const socket = this.socket;
    if (!socket) return;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const n = socket.write(head);
      if (n < 0) return;
      this.queued -= n;
      if (n < head.length) {
        this.queue[0] = head.subarray(n);
        return;
      }
      this.queue.shift();
    }
    if (this.ending) socket.end();
  }

  onData(cb: (bytes: Uint8Array) => void): void {
    this.dataCbs.push(cb);
    if (this.early.length > 0) {
      const early = this.early;
      this.early = [];
      for (const bytes of early) cb(bytes);
    }
  }

  onClose(cb: (reason?: Error) => void): void {
    if (this.closed) queueMicrotask(() => cb(this.closeReason));
    else this.closeCbs.push(cb);
  }

  /** Flush what is queued, then end the stream; onClose fires once the socket is gone. */
  close(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    if (this.queue.length === 0) this.socket?.end();
  }

  private finish(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason ??= error;
    this.queue = [];
    this.queued = 0;
    const cbs = this.closeCbs;
    this.closeCbs = [];
    for (const cb of cbs) cb(this.closeReason);
  }
}
