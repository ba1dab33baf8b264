/**
 * net.connect: the guest end of a published port. Connects to 127.0.0.1:port (inside the
 * guest; in host compat on the host) and carries the connection's bytes over the stream; the
 * host end is src/supervisor/forward.ts, the message shapes are src/protocol/messages.ts's.
 *
 * Invariants:
 * - Loopback only: the agent never connects anywhere else for a forward.
 * - Bounded: at most NET_WINDOW_BYTES of the connection's output are in flight past the host's
 *   last `ack` (reading the connection pauses above it), and the host's input is acknowledged
 *   only once written to the connection, so the host never has more than a window queued here.
 * - Half-close both ways: the host's END ends our writing side after what it sent; the
 *   connection's FIN is an `eof` event. The result comes when the connection has closed;
 *   a refused connect is CONNECTION_REFUSED, other failures end it with `reset: true`.
 * - A `reset` control message or the host connection dropping destroys the connection.
 */
import net from "node:net";
import type { ServerStream } from "../src/protocol/connection.ts";
import { PyroError, toPyroError } from "../src/protocol/errors.ts";
import { Channel } from "../src/protocol/frame.ts";
import { NET_WINDOW_BYTES } from "../src/protocol/limits.ts";

export function connectPort(req: { port: number }, stream: ServerStream): Promise<void> {
  const sock = net.connect({ host: "127.0.0.1", port: req.port, allowHalfOpen: true });
  let connected = false;
  let reset = false;
  let bytesIn = 0;
  let bytesOut = 0;
  let acked = 0;
  let paused = false;

  sock.on("connect", () => {
    connected = true;
  });
  sock.on("data", (chunk: Buffer) => {
    bytesOut += chunk.byteLength;
    stream.sendData(chunk, Channel.STDOUT);
    if (!paused && bytesOut - acked > NET_WINDOW_BYTES) {
      paused = true;
      sock.pause();
    }
  });
  sock.on("end", () => stream.sendJson({ type: "eof" }));
  stream.onControl((m) => {
    if (m.op === "ack" && typeof m.bytes === "number") {
      acked = Math.max(acked, m.bytes);
      if (paused && bytesOut - acked <= NET_WINDOW_BYTES) {
        paused = false;
        sock.resume();
      }
    } else if (m.op === "reset") {
      reset = true;
      sock.destroy();
    }
  });
  stream.onAbandon(() => sock.destroy());

  // host → connection: acknowledged once written
  (async () => {
    try {
      for await (const part of stream.input) {
        sock.write(part, (err) => {
          if (err) return;
          bytesIn += part.byteLength;
          stream.sendJson({ type: "ack", bytes: bytesIn });
        });
      }
      sock.end();
    } catch {
      sock.destroy();
    }
  })();

  return new Promise((resolve) => {
    sock.on("error", (err: NodeJS.ErrnoException) => {
      if (connected) {
        reset = true;
        return;
      }
      stream.fail(
        err.code === "ECONNREFUSED"
          ? new PyroError(
              "CONNECTION_REFUSED",
              `nothing accepts connections on port ${req.port} in the workspace`,
              {
                details: { port: req.port },
              },
            )
          : toPyroError(err),
      );
    });
    sock.on("close", () => {
      if (connected) stream.result({ bytes_in: bytesIn, bytes_out: bytesOut, reset });
      else if (!stream.isFinished)
        stream.fail(new PyroError("CONNECTION_REFUSED", `could not connect to port ${req.port}`));
      resolve();
    });
  });
}
