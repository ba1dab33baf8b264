/** ByteChannel adapters that need nothing but Bun: in-memory pairs and process pipes. */
import type { ByteChannel } from "../vmm/types.ts";

class Listeners {
  data: Array<(b: Uint8Array) => void> = [];
  close: Array<(e?: Error) => void> = [];
  closed = false;
  emitData(b: Uint8Array) {
    for (const cb of this.data) cb(b);
  }
  emitClose(e?: Error) {
    if (this.closed) return;
    this.closed = true;
    for (const cb of this.close.splice(0)) cb(e);
  }
}

/** Two connected in-memory channels (tests, in-process host compat). Delivery is async like a socket. */
export function channelPair(): [ByteChannel, ByteChannel] {
  const a = new Listeners();
  const b = new Listeners();
  const make = (self: Listeners, peer: Listeners): ByteChannel => ({
    write(bytes) {
      if (self.closed) return;
      const copy = bytes.slice();
      queueMicrotask(() => peer.emitData(copy));
    },
    onData(cb) {
      self.data.push(cb);
    },
    onClose(cb) {
      if (self.closed) cb();
      else self.close.push(cb);
    },
    close() {
      queueMicrotask(() => {
        self.emitClose();
        peer.emitClose();
      });
    },
  });
  return [make(a, b), make(b, a)];
}

/**
 * A channel over a readable byte stream and a writer (child process stdio, or our own
 * stdin/stdout when the agent is spawned by the host backend).
 */
export function streamChannel(
  readable: ReadableStream<Uint8Array>,
  writer: { write(b: Uint8Array): unknown; flush?(): unknown; end?(): unknown },
): ByteChannel {
  const l = new Listeners();
  // pauseReading() stops pulling from the stream, so the pipe fills and the writer blocks.
  let resume: (() => void) | null = null;
  let paused: Promise<void> | null = null;
  (async () => {
    try {
      for await (const chunk of readable) {
        l.emitData(chunk);
        if (paused) await paused;
      }
      l.emitClose();
    } catch (err) {
      l.emitClose(err as Error);
    }
  })();
  // Bytes the writer accepted but has not yet handed to the OS: a Bun FileSink returns a
  // promise from write() when it had to buffer. Bulk senders pause on this (flow control).
  let pending = 0;
  return {
    get bufferedBytes() {
      return pending;
    },
    pauseReading() {
      paused ??= new Promise((r) => {
        resume = r;
      });
    },
    resumeReading() {
      const r = resume;
      paused = null;
      resume = null;
      r?.();
    },
    write(bytes) {
      if (l.closed) return;
      try {
        const r = writer.write(bytes);
        // Always flush: a FileSink holds small writes in its own buffer until flushed, and
        // skipping it while a write is pending let later frames overtake earlier ones.
        writer.flush?.();
        if (r instanceof Promise) {
          pending += bytes.byteLength;
          r.then(
            () => {
              pending -= bytes.byteLength;
            },
            (err) => l.emitClose(err as Error),
          );
        }
      } catch (err) {
        l.emitClose(err as Error);
      }
    },
    onData(cb) {
      l.data.push(cb);
    },
    onClose(cb) {
      if (l.closed) cb();
      else l.close.push(cb);
    },
    close() {
      try {
        writer.end?.();
      } catch {}
      l.emitClose();
    },
  };
}
