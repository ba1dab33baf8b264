/**
 * A ByteChannel over a UNIX stream socket: QEMU's virtio-serial chardev (and Firecracker's
 * vsock UDS) are plain UNIX sockets on the host. The channel itself (write queue, listeners)
 * is src/protocol's SocketChannel; this adds connecting with retries until a deadline.
 */
import type { ByteChannel } from "../protocol/channel.ts";
import { type SocketChannel, socketChannelHandlers } from "../protocol/channels.ts";
import { PyroError } from "../protocol/errors.ts";
import { sleep } from "./process.ts";

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
    try {
      const socket = await Bun.connect<SocketChannel>({ unix: path, socket: socketChannelHandlers() });
      return socket.data;
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
