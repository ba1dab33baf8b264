/**
 * The supervisor's client socket: a UNIX socket server whose connections are the shared
 * SocketChannel (src/protocol/channels.ts: write queue, backpressure, listener bookkeeping),
 * so host, guest and supervisor run one implementation of socket channels.
 * The socket is mode 0600 (and its run directory 0700): only the workspace's owner connects.
 */
import { chmodSync, rmSync } from "node:fs";
import { type SocketChannel, socketChannelHandlers } from "../protocol/channels.ts";

export function listenUnix(path: string, onConnection: (ch: SocketChannel) => void): { stop(): void } {
  rmSync(path, { force: true });
  const server = Bun.listen<SocketChannel>({ unix: path, socket: socketChannelHandlers(onConnection) });
  chmodSync(path, 0o600);
  return {
    stop() {
      server.stop(true);
      rmSync(path, { force: true });
    },
  };
}
