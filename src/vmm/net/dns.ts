/**
 * The guest's DNS on a tap network: a UDP forwarder the supervisor runs on the tap's host
 * address, port 53, relaying each query to the host's first resolver (/etc/resolv.conf) and
 * the answer back. It works whatever the host resolver is (127.0.0.53 included), and the
 * ruleset lets the guest reach nothing else on the host unless listed.
 *
 * Invariants: at most MAX_INFLIGHT queries are pending (more are dropped, the guest retries);
 * each waits at most QUERY_TIMEOUT_MS; only DNS-sized datagrams are relayed. Names are not
 * filtered: an allow-list restricts connections, not lookups. `onAnswer` sees every answer
 * (its question and A records) BEFORE the guest does, so addresses it allows are in the
 * ruleset by the time the guest connects.
 */
import { readFileSync } from "node:fs";

const MAX_INFLIGHT = 64;
const QUERY_TIMEOUT_MS = 5000;
const MAX_DNS_UDP = 4096;

/**
 * The question name and the IPv4 addresses (A records of the answer section, CNAME chains
 * included) of a DNS response; anything malformed yields what was read before it.
 */
export function parseDnsAnswer(msg: Uint8Array): { question: string | null; a: string[] } {
  const out = { question: null as string | null, a: [] as string[] };
  if (msg.length < 12) return out;
  const dv = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  if (!(dv.getUint16(2) & 0x8000)) return out; // a query, not a response
  const qd = dv.getUint16(4);
  const an = dv.getUint16(6);
  // A name at `at`: its text and the offset after it (compression pointers followed, bounded).
  const name = (at: number): [string, number] => {
    const labels: string[] = [];
    let end = -1;
    for (let hops = 0; hops < 32; hops++) {
      const len = msg[at];
      if (len === undefined) throw new Error("truncated name");
      if (len === 0) return [labels.join("."), end < 0 ? at + 1 : end];
      if ((len & 0xc0) === 0xc0) {
        if (end < 0) end = at + 2;
        at = dv.getUint16(at) & 0x3fff;
        continue;
      }
      labels.push(new TextDecoder().decode(msg.subarray(at + 1, at + 1 + len)));
      at += 1 + len;
    }
    throw new Error("name loop");
  };
  try {
    let off = 12;
    for (let i = 0; i < qd; i++) {
      const [q, next] = name(off);
      if (i === 0) out.question = q.toLowerCase().replace(/\.$/, "");
      off = next + 4;
    }
    for (let i = 0; i < an; i++) {
      const [, next] = name(off);
      const type = dv.getUint16(next);
      const cls = dv.getUint16(next + 2);
      const rdlen = dv.getUint16(next + 8);
      if (next + 10 + rdlen > msg.length) break;
      if (type === 1 && cls === 1 && rdlen === 4)
        out.a.push([...msg.subarray(next + 10, next + 14)].join("."));
      off = next + 10 + rdlen;
    }
  } catch {}
  return out;
}

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
  /** called with each answer before it is relayed (see parseDnsAnswer) */
  onAnswer?: (answer: { question: string | null; a: string[] }) => void;
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
              try {
                opts.onAnswer?.(parseDnsAnswer(answer));
              } catch {}
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
