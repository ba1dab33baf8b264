/**
 * Tap-network test support (test/network-guest.test.ts, test/run-allow-guest.test.ts): only
 * servers on this machine are reached. `localServers()` puts two addresses from TEST-NET-2 on
 * a veth pair it creates and runs one HTTP server on each (`stop()` removes both); the probe
 * line prints probe-ran first (read it with guest-env.ts probeReached). Needs root.
 */
import { existsSync } from "node:fs";

/** A bash line that prints probe-ran, then GETs http://addr:port/ (as in guest-env.ts loopbackProbe). */
export const probeLine = (addr: string, port: number) =>
  `echo probe-ran; exec 3<>/dev/tcp/${addr}/${port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3`;

export const ipRun = (...args: string[]) => {
  const p = Bun.spawnSync(["ip", ...args], { stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${p.stderr.toString()}`);
};
/** The tap device and nftables table of a workspace (ws_<hex>) or a run (run_<hex>): src/vmm/net/tap.ts */
export const tapOf = (id: string) => `pyt${id.replace(/^(?:ws|run)_/, "")}`;
export const tableOf = (id: string) => `pyro_${id.replace(/^(?:ws|run)_/, "")}`;
export const tapExists = (id: string) => existsSync(`/sys/class/net/${tapOf(id)}`);
export const tableExists = (id: string) =>
  Bun.spawnSync(["nft", "list", "tables"])
    .stdout.toString()
    .includes(`inet ${tableOf(id)}`);

export interface LocalServers {
  /** the address to list, and one that is not listed */
  allowed: string;
  other: string;
  /** the HTTP servers on `allowed` and `other` (each answers `hello-from-<its address>`) */
  servers: [ReturnType<typeof Bun.serve>, ReturnType<typeof Bun.serve>];
  stop(): void;
}

/** Two local HTTP servers on TEST-NET-2 addresses of a veth pair named after this process. */
export function localServers(): LocalServers {
  const veth = `pyv${process.pid % 100000}`;
  const octet = 10 + (process.pid % 200);
  const allowed = `198.51.100.${octet}`;
  const other = `198.51.100.${octet + 1}`;
  ipRun("link", "add", `${veth}a`, "type", "veth", "peer", "name", `${veth}b`);
  ipRun("addr", "add", `${allowed}/32`, "dev", `${veth}a`);
  ipRun("addr", "add", `${other}/32`, "dev", `${veth}a`);
  ipRun("link", "set", `${veth}a`, "up");
  const servers = [allowed, other].map((hostname) =>
    Bun.serve({ hostname, port: 0, fetch: () => new Response(`hello-from-${hostname}`) }),
  ) as LocalServers["servers"];
  return {
    allowed,
    other,
    servers,
    stop() {
      for (const s of servers) s.stop(true);
      Bun.spawnSync(["ip", "link", "del", `${veth}a`]);
    },
  };
}
