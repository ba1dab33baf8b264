/**
 * Published ports: a TCP listener on the host's 127.0.0.1 per forward, each accepted
 * connection carried to a guest port over the one agent channel as a `net.connect` stream
 * (guest/net.ts connects to 127.0.0.1:port inside the guest). Carried over the agent channel
 * rather than by QEMU's hostfwd: it needs no guest network device (a workspace with policy
 * `off` can still publish) and serves Firecracker, which has no user-mode network, and host
 * compat alike.
 *
 * Invariants:
 * - Listeners bind 127.0.0.1 only. A taken host port is PORT_IN_USE and nothing is left open.
 * - Forwards are keyed by host port (one guest port may be published on several).
 * - Bounded: per connection at most NET_WINDOW_BYTES are in flight each way past the peer's
 *   last ack (the host socket's reading pauses above it; the agent acknowledges what it has
 *   written into the guest's connection, we acknowledge what our socket has taken), so a
 *   slow reader stalls only its own connection, never the shared agent channel.
 * - Half-close propagates both ways (host FIN → END of input; guest FIN → `eof` → our FIN);
 *   a guest refusal or a reset ends the host connection abruptly; a host connection that
 *   goes away resets the guest's.
 * - close() ends the listener and every connection it accepted; closeAll() runs when the
 *   supervisor ends. Listeners are sockets of this process: a supervisor killed -9 leaves
 *   none behind.
 */
import net from "node:net";
import { parseRequest, parseResult, type RequestOf } from "../protocol/call.ts";
import type { ClientStream, ServerStream } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { NET_WINDOW_BYTES } from "../protocol/limits.ts";
import { MESSAGE_TABLE } from "../protocol/messages.ts";
import { SUPERVISOR_TABLE } from "../protocol/supervisor.ts";
import type { AgentLink } from "./agent.ts";
import { log } from "./log.ts";

export interface PublishedPort {
  guest_port: number;
  host_port: number;
  host: "127.0.0.1";
}

interface Forward {
  port: PublishedPort;
  server: net.Server;
  sockets: Set<net.Socket>;
}

/** The agent side of the link a forward needs (AgentLink, or a fake in tests). */
export type AgentOpener = Pick<AgentLink, "open">;

export class PortForwards {
  private readonly forwards = new Map<number, Forward>();

  constructor(private readonly agent: AgentOpener) {}

  /** Listen on 127.0.0.1:hostPort (0 or absent: an ephemeral port) and forward to guestPort. */
  async open(guestPort: number, hostPort = 0): Promise<PublishedPort> {
    checkPort(guestPort, "guest_port", 1);
    checkPort(hostPort, "host_port", 0);
    const sockets = new Set<net.Socket>();
    const server = net.createServer({ allowHalfOpen: true }, (sock) => {
      sockets.add(sock);
      sock.on("close", () => sockets.delete(sock));
      carry(this.agent, guestPort, sock);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => {
        server.close();
        reject(
          err.code === "EADDRINUSE"
            ? new PyroError("PORT_IN_USE", `host port ${hostPort} on 127.0.0.1 is already in use`, {
                details: { host_port: hostPort, guest_port: guestPort },
                hint: "publish on another host port, or leave it out for an ephemeral one",
              })
            : err.code === "EACCES"
              ? new PyroError("PERMISSION_DENIED", `not allowed to listen on host port ${hostPort}`, {
                  details: { host_port: hostPort },
                })
              : new PyroError("IO_ERROR", `cannot listen on 127.0.0.1:${hostPort}: ${err.message}`),
        );
      });
      server.listen({ host: "127.0.0.1", port: hostPort, exclusive: true }, () => resolve());
    });
    server.on("error", (err) => log(`forward listener error: ${err.message}`));
    const bound = (server.address() as net.AddressInfo).port;
    const port: PublishedPort = { guest_port: guestPort, host_port: bound, host: "127.0.0.1" };
    this.forwards.set(bound, { port, server, sockets });
    log(`forward 127.0.0.1:${bound} → guest port ${guestPort}`);
    return port;
  }

  /** Stop listening on hostPort and end its connections; false when nothing listened there. */
  close(hostPort: number): boolean {
    const f = this.forwards.get(hostPort);
    if (!f) return false;
    this.forwards.delete(hostPort);
    f.server.close();
    for (const s of f.sockets) s.destroy();
    log(`forward 127.0.0.1:${hostPort} closed`);
    return true;
  }

  closeAll(): void {
    for (const hostPort of [...this.forwards.keys()]) this.close(hostPort);
  }

  list(): PublishedPort[] {
    return [...this.forwards.values()].map((f) => ({ ...f.port }));
  }

  /** `sup.forward.*` requests. */
  serve(client: ServerStream, op: string): void {
    this.handle(client, op).then(
      (result) => client.result(result),
      (err) => client.fail(err),
    );
  }

  private async handle(client: ServerStream, op: string): Promise<Record<string, unknown>> {
    switch (op) {
      case "sup.forward.open": {
        const r: RequestOf<"sup.forward.open"> = parseRequest(SUPERVISOR_TABLE[op].request, client.request);
        return { ...(await this.open(r.guest_port, r.host_port)) };
      }
      case "sup.forward.close": {
        const r: RequestOf<"sup.forward.close"> = parseRequest(SUPERVISOR_TABLE[op].request, client.request);
        return { closed: this.close(r.host_port) };
      }
      case "sup.forward.list":
        parseRequest(SUPERVISOR_TABLE[op].request, client.request);
        return { forwards: this.list() };
      default:
        throw new PyroError("INVALID_INPUT", `unknown supervisor request ${op}`);
    }
  }
}

function checkPort(n: number, field: string, min: number): void {
  if (!Number.isInteger(n) || n < min || n > 65535)
    throw new PyroError("INVALID_INPUT", `${field} must be an integer from ${min} to 65535`, {
      details: { field },
    });
}

/** One accepted host connection, carried to guestPort on a fresh agent stream. */
function carry(agent: AgentOpener, guestPort: number, sock: net.Socket): void {
  let upstream: ClientStream;
  try {
    upstream = agent.open(
      parseRequest(MESSAGE_TABLE["net.connect"].request, { op: "net.connect", port: guestPort }),
    );
  } catch (err) {
    log(`forward to guest port ${guestPort} refused: ${(err as Error).message}`);
    sock.destroy();
    return;
  }
  let finished = false;
  let sent = 0;
  let acked = 0;
  let taken = 0;
  let paused = false;

  // host → guest, at most a window past the agent's last ack
  sock.on("data", (chunk: Buffer) => {
    sent += chunk.byteLength;
    upstream.sendData(chunk);
    if (!paused && sent - acked > NET_WINDOW_BYTES) {
      paused = true;
      sock.pause();
    }
  });
  sock.on("end", () => upstream.endInput());
  sock.on("error", () => {}); // "close" follows
  sock.on("close", () => {
    if (!finished) upstream.sendJson({ op: "reset" });
  });

  // guest → host, acknowledged once our socket has taken it
  const relayed = (async () => {
    for await (const ev of upstream.events) {
      if (ev.kind === "data") {
        const n = ev.bytes.byteLength;
        sock.write(ev.bytes, (err) => {
          if (err) return;
          taken += n;
          upstream.sendJson({ op: "ack", bytes: taken });
        });
      } else if (ev.message.type === "ack" && typeof ev.message.bytes === "number") {
        acked = Math.max(acked, ev.message.bytes);
        if (paused && sent - acked <= NET_WINDOW_BYTES) {
          paused = false;
          sock.resume();
        }
      } else if (ev.message.type === "eof") {
        sock.end();
      }
    }
  })();

  // the end, after every event before it
  upstream.done.then(
    async (raw) => {
      await relayed;
      finished = true;
      let reset = true;
      try {
        reset = parseResult("net.connect", raw).reset;
      } catch (err) {
        log(`forward to guest port ${guestPort}: ${(err as Error).message}`);
      }
      if (reset) sock.destroy();
      else sock.end();
    },
    async (err: PyroError) => {
      await relayed;
      finished = true;
      if (err.code !== "CONNECTION_REFUSED") log(`forward to guest port ${guestPort}: ${err.message}`);
      sock.destroy();
    },
  );
}
