/** A 0600 UNIX socket server whose connections are ByteChannels (with write backpressure). */
import { chmodSync, existsSync, unlinkSync } from "node:fs";
import type { Socket } from "bun";
import type { ByteChannel } from "../vmm/types.ts";

interface State {
  pending: Uint8Array[];
  data: Array<(b: Uint8Array) => void>;
  close: Array<(e?: Error) => void>;
  closed: boolean;
}

function flush(sock: Socket<State>): void {
  const st = sock.data;
  while (st.pending.length > 0) {
    const head = st.pending[0] as Uint8Array;
    const n = sock.write(head);
    if (n < head.byteLength) {
      st.pending[0] = head.subarray(Math.max(n, 0));
      return;
    }
    st.pending.shift();
  }
}

function closeState(st: State, err?: Error): void {
  if (st.closed) return;
  st.closed = true;
  for (const cb of st.close.splice(0)) cb(err);
}

export function listenUnix(path: string, onConnection: (ch: ByteChannel) => void): { stop(): void } {
  if (existsSync(path)) unlinkSync(path);
  const server = Bun.listen<State>({
    unix: path,
    socket: {
      open(sock) {
        sock.data = { pending: [], data: [], close: [], closed: false };
        const st = sock.data;
        onConnection({
          write(bytes) {
            if (st.closed) return;
            st.pending.push(bytes);
            if (st.pending.length === 1) flush(sock);
          },
          onData: (cb) => st.data.push(cb),
          onClose: (cb) => (st.closed ? cb() : st.close.push(cb)),
          close: () => {
            sock.end();
            closeState(st);
          },
          get bufferedBytes() {
            return st.pending.reduce((n, b) => n + b.byteLength, 0);
          },
          pauseReading: () => sock.pause(),
          resumeReading: () => sock.resume(),
        });
      },
      data(sock, chunk) {
        const bytes = new Uint8Array(chunk);
        for (const cb of sock.data.data) cb(bytes);
      },
      drain(sock) {
        flush(sock);
      },
      close(sock) {
        closeState(sock.data);
      },
      error(sock, err) {
        closeState(sock.data, err);
      },
    },
  });
  chmodSync(path, 0o600);
  return {
    stop() {
      server.stop(true);
      try {
        unlinkSync(path);
      } catch {}
    },
  };
}
