/**
 * The guest's DNS on a tap network: a UDP forwarder the supervisor runs on the tap's host
 * address, port 53, relaying each query to the host's first resolver (/etc/resolv.conf) and
 * the answer back. It works whatever the host resolver is (127.0.0.53 included), and the
 * ruleset lets the guest reach nothing else on the host unless listed.
 *
 * Invariants: at most MAX_INFLIGHT queries are pending (more are dropped, the guest retries);
 * each waits at most QUERY_TIMEOUT_MS; only DNS-sized datagrams are relayed. Names are not
 * filtered: an allow-list restricts connections, not lookups.
 */
import { readFileSync } from "node:fs";

const MAX_INFLIGHT = 64;
const QUERY_TIMEOUT_MS = 5000;
const MAX_DNS_UDP = 4096;

/** The first `nameserver` of resolv.conf text (IPv4 only), else null. */
export function firstNameserver(text: string): string | null {
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (m) return m[1] as string;
  }
  return null;
}

export interface DnsForwarder {
  stop(): void;
}

export interface DnsForwarderOptions {
  /** default: the first nameserver of /etc/resolv.conf (127.0.0.53 when there is none) */
  upstream?: string;
  /** tests: other ports than 53 */
  port?: number;
  upstreamPort?: number;
}

export async function startDnsForwarder(
  listenIp: string,
  opts: DnsForwarderOptions = {},
): Promise<DnsForwarder & { port: number }> {
  let resolver = opts.upstream ?? null;
  if (!resolver) {
    try {
      resolver = firstNameserver(readFileSync("/etc/resolv.conf", "utf8"));
    } catch {}
  }
  const target = resolver ?? "127.0.0.53";
  let inflight = 0;
  const server = await Bun.udpSocket({
    hostname: listenIp,
    port: opts.port ?? 53,
    socket: {
      data(sock, buf, port, address) {
        if (inflight >= MAX_INFLIGHT || buf.length < 12 || buf.length > MAX_DNS_UDP) return;
        inflight++;
        let done = false;
        const finish = (client?: { close(): void }) => {
          if (done) return;
          done = true;
          inflight--;
          client?.close();
        };
        void Bun.udpSocket({
          connect: { hostname: target, port: opts.upstreamPort ?? 53 },
          socket: {
            data(client, answer) {
              if (!sock.closed) sock.send(answer, port, address);
              finish(client);
            },
          },
        })
          .then((client) => {
            client.send(buf);
            setTimeout(() => finish(client), QUERY_TIMEOUT_MS);
          })
          .catch(() => finish());
      },
    },
  });
  return { port: server.port, stop: () => server.close() };
}
