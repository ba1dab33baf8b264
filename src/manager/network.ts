/**
 * A workspace's network as the manager sees it: which mechanism serves its policy, the
 * allow-list checks at create, the tap network's life (set up by the supervisor before boot,
 * released after the machine stops, repaired after a crash) and the refusals it recorded.
 *
 * Invariants:
 * - A tap network is used exactly when the policy allows egress and either an allow-list is
 *   set or the backend is Firecracker (which has no user-mode networking); plain egress on
 *   QEMU keeps user-mode networking (no root needed).
 * - The record names the tap and table (`net`) before either exists (src/vmm/net/host.ts
 *   calls back first), so whoever repairs or deletes the record removes them. The field
 *   stays after release (removal is idempotent) and gives the next boot its previous slot.
 * - Refusals survive the table: release reads the table's refusal sets into
 *   logs/network-refusals.json (counts summed per destination) before deleting it.
 */

import { lookup, Resolver } from "node:dns/promises";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { processStart } from "../base/proc.ts";
import { PyroError } from "../protocol/errors.ts";
import { type AllowList, parseIpv4, splitAllowed, validateAllowList } from "../vmm/net/allow.ts";
import { startDnsForwarder } from "../vmm/net/dns.ts";
import {
  allowAddress,
  createTapNetwork,
  readRefusals,
  removeTapNetwork,
  tapUnavailableReason,
} from "../vmm/net/host.ts";
import type { Refusal } from "../vmm/net/nft.ts";
import { type TapNet, tableName } from "../vmm/net/tap.ts";
import { writeFileAtomic } from "./atomic.ts";
import type { Machine } from "./machine.ts";
import { logsDir } from "./paths.ts";
import type { WorkspaceRecord } from "./record.ts";

type Policy = WorkspaceRecord["network_policy"];

export const refusalsPath = (home: string, id: string) => join(logsDir(home, id), "network-refusals.json");

const hasAllowList = (r: Pick<WorkspaceRecord, "allow_hosts" | "allow_cidrs">) =>
  (r.allow_hosts?.length ?? 0) + (r.allow_cidrs?.length ?? 0) > 0;

/** Does this workspace's machine get a tap network (rather than user-mode or none)? */
export function usesTap(
  r: Pick<WorkspaceRecord, "network_policy" | "backend" | "allow_hosts" | "allow_cidrs">,
): boolean {
  return r.network_policy !== "off" && (hasAllowList(r) || r.backend === "firecracker");
}

/**
 * The create-time checks: an allow-list implies egress (an explicit `off` with one is a
 * contradiction), both lists are well-formed, and this host can enforce them. Nothing is made.
 */
export function checkNetworkInput(input: {
  network_policy?: Policy;
  allow_hosts?: string[];
  allow_cidrs?: string[];
  allow_host_compat?: boolean;
}): { policy: Policy; allow: AllowList | null } {
  const allow = validateAllowList(input.allow_hosts, input.allow_cidrs);
  if (allow.hosts.length + allow.cidrs.length === 0)
    return { policy: input.network_policy ?? "off", allow: null };
  if (input.network_policy === "off") {
    throw new PyroError("INVALID_INPUT", "an allow-list needs network access, but network_policy is off", {
      hint: "leave network_policy out (an allow-list implies egress) or set it to egress",
    });
  }
  const why = tapUnavailableReason();
  if (why) {
    throw new PyroError("NETWORK_UNSUPPORTED", `egress allow-lists cannot be enforced here: ${why}`, {
      hint: "allow-lists use a tap device and nftables (run pyro as root, apt-get install nftables); plain --network-policy egress works without them",
    });
  }
  return { policy: input.network_policy ?? "egress", allow };
}

/**
 * The same checks for `run`, whose switch is `network` (a boolean) rather than a policy: an
 * allow-list implies network, `network: false` with one is a contradiction. Returns whether
 * the machine gets a network and the validated allow-list (null: none).
 */
export function checkRunNetworkInput(input: {
  network?: boolean;
  allow_hosts?: string[];
  allow_cidrs?: string[];
}): { network: boolean; allow: AllowList | null } {
  const listed = (input.allow_hosts?.length ?? 0) + (input.allow_cidrs?.length ?? 0) > 0;
  if (listed && input.network === false) {
    validateAllowList(input.allow_hosts, input.allow_cidrs); // a malformed entry is named first
    throw new PyroError("INVALID_INPUT", "an allow-list needs network access, but network is false", {
      hint: "leave network out (an allow-list implies it) or set it to true",
    });
  }
  const { policy, allow } = checkNetworkInput({
    network_policy: input.network === undefined ? undefined : input.network ? "egress" : "off",
    allow_hosts: input.allow_hosts,
    allow_cidrs: input.allow_cidrs,
  });
  return { network: policy !== "off", allow };
}

/** Host compat cannot restrict egress: an allow-list there is NETWORK_UNSUPPORTED. */
export function refuseHostCompatAllowList(backend: string, allow: AllowList | null): void {
  if (allow && backend === "host") {
    throw new PyroError(
      "NETWORK_UNSUPPORTED",
      "host compat cannot restrict egress: commands use the host's network",
      {
        hint: "egress allow-lists need a guest backend (QEMU or Firecracker)",
      },
    );
  }
}

/**
 * `PYRO_DNS_UPSTREAM=IP[:PORT]`: the resolver pyro uses for allowed names and forwards the
 * guest's lookups to (default: the host's own resolution, and the first nameserver of
 * /etc/resolv.conf for the guest). Null when unset.
 */
export function dnsUpstream(env: Record<string, string | undefined>): { host: string; port: number } | null {
  const raw = env.PYRO_DNS_UPSTREAM;
  if (!raw) return null;
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(raw);
  const port = m ? Number(m[2] ?? 53) : 0;
  if (!m || parseIpv4(m[1] as string) === null || port < 1 || port > 65535) {
    throw new PyroError("INVALID_INPUT", `PYRO_DNS_UPSTREAM must be IPv4[:PORT] (got "${raw}")`);
  }
  return { host: m[1] as string, port };
}

/** Every IPv4 address of each allowed host name, resolved on the host now. */
export async function resolveAllowedHosts(
  hosts: string[],
  env: Record<string, string | undefined> = process.env,
): Promise<string[]> {
  const upstream = dnsUpstream(env);
  const resolver = upstream ? new Resolver({ timeout: 5000, tries: 2 }) : null;
  resolver?.setServers([`${upstream?.host}:${upstream?.port}`]);
  const out = new Set<string>();
  for (const h of hosts) {
    let addrs: string[];
    try {
      addrs = resolver
        ? await resolver.resolve4(h)
        : (await lookup(h, { family: 4, all: true })).map((a) => a.address);
    } catch (err) {
      throw new PyroError("INVALID_INPUT", `allow_hosts entry "${h}" does not resolve on this host`, {
        details: { host: h, reason: (err as NodeJS.ErrnoException).code ?? String(err) },
      });
    }
    for (const a of addrs) out.add(a);
  }
  return [...out];
}

export interface WorkspaceNetwork {
  tap: TapNet;
  /** Stop the DNS forwarder, keep the refusals, remove table and tap. Idempotent. */
  release(): void;
}

/**
 * Set up the tap network of a workspace about to boot (null when it uses none). Host names
 * are re-resolved at every boot. `record` is how the names reach the record first.
 */
export async function setupNetwork(
  home: string,
  r: Pick<
    WorkspaceRecord,
    "workspace_id" | "network_policy" | "backend" | "allow_hosts" | "allow_cidrs" | "net"
  >,
  recordNet: (net: NonNullable<WorkspaceRecord["net"]>) => Promise<unknown>,
  env: Record<string, string | undefined> = process.env,
): Promise<WorkspaceNetwork | null> {
  if (!usesTap(r)) return null;
  const id = r.workspace_id;
  const allow = hasAllowList(r)
    ? splitAllowed(r.allow_cidrs ?? [], await resolveAllowedHosts(r.allow_hosts ?? [], env))
    : null;
  const tap = await createTapNetwork({
    workspaceId: id,
    allow,
    preferSlot: r.net?.slot,
    beforeCreate: (n) => recordNet({ tap: n.hostDevName, table: `inet ${tableName(id)}`, slot: n.slot }),
  });
  let dns: { stop(): void } | null = null;
  const release = () => {
    dns?.stop();
    dns = null;
    releaseNetwork(home, id);
  };
  // An allowed name's addresses as the guest's own lookups see them join the allow-list too
  // (before the answer reaches the guest), so a name whose addresses rotate keeps working.
  const names = new Set(r.allow_hosts ?? []);
  const learned = new Set<string>();
  const onAnswer = ({ question, a }: { question: string | null; a: string[] }) => {
    if (!question || !names.has(question)) return;
    for (const addr of a) if (!learned.has(addr) && allowAddress(id, addr)) learned.add(addr);
  };
  try {
    const upstream = dnsUpstream(env);
    dns = await startDnsForwarder(tap.gatewayIp, {
      onAnswer,
      ...(upstream ? { upstream: upstream.host, upstreamPort: upstream.port } : {}),
    });
  } catch (err) {
    release();
    throw new PyroError(
      "NETWORK_UNSUPPORTED",
      `cannot serve DNS on ${tap.gatewayIp}:53: ${(err as Error).message}`,
    );
  }
  return { tap, release };
}

/**
 * The tap network of a one-shot `run` with an allow-list (`id` is the run's `run_<hex>`): the
 * same tap, table and DNS forwarder as a workspace's, named after the run. Before the tap
 * exists, `run.json` in the run's directory names it with the run's process (pid + start
 * time), so a run killed outright leaves nothing the next run does not remove
 * (sweepDeadRuns).
 */
export async function setupRunNetwork(
  home: string,
  id: string,
  runDirPath: string,
  allow: AllowList,
  backend: WorkspaceRecord["backend"],
  env: Record<string, string | undefined> = process.env,
): Promise<WorkspaceNetwork> {
  const net = await setupNetwork(
    home,
    {
      workspace_id: id,
      network_policy: "egress",
      backend,
      allow_hosts: allow.hosts,
      allow_cidrs: allow.cidrs,
      net: null,
    },
    async () => recordRunOwner(runDirPath, true),
    env,
  );
  return net as WorkspaceNetwork; // an allow-list always uses a tap
}

/** In a run's directory: the process that runs it and whether it has a tap network. */
export const RUN_OWNER_FILE = "run.json";

/** Name this process as the run's owner (`net`: a tap network is about to exist). */
export function recordRunOwner(runDirPath: string, net: boolean): void {
  writeFileAtomic(
    join(runDirPath, RUN_OWNER_FILE),
    `${JSON.stringify({ pid: process.pid, pid_start: processStart(process.pid) ?? "?", net })}\n`,
  );
}

/**
 * Remove what runs killed outright left under `runsDir` (their directory, and the tap and
 * nftables table named in its run.json) when the run's process is gone. A directory without
 * run.json (a run that has not recorded itself yet) is left alone. Never throws.
 */
export function sweepDeadRuns(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    try {
      const owner = JSON.parse(readFileSync(join(dir, n, RUN_OWNER_FILE), "utf8")) as {
        pid: number;
        pid_start: string;
        net?: boolean;
      };
      if (processStart(owner.pid) === owner.pid_start) continue;
      if (owner.net) removeTapNetwork(n);
      rmSync(join(dir, n), { recursive: true, force: true });
    } catch {}
  }
}

/** The machine, its shutdown now also releasing its network (the tap goes after the VMM). */
export function releasedAfter(machine: Machine, net: WorkspaceNetwork | null): Machine {
  if (!net) return machine;
  const shutdown = machine.shutdown.bind(machine);
  machine.shutdown = async (timeoutMs) => {
    try {
      await shutdown(timeoutMs);
    } finally {
      net.release();
    }
  };
  return machine;
}

/** Keep the live table's refusals, then remove table and tap (a crashed supervisor's too). Never throws. */
export function releaseNetwork(home: string, id: string): void {
  try {
    const live = readRefusals(id);
    if (live.length && existsSync(logsDir(home, id))) {
      writeFileAtomic(
        refusalsPath(home, id),
        `${JSON.stringify(mergeRefusals(persisted(home, id), live))}\n`,
      );
    }
  } catch {}
  removeTapNetwork(id);
}

function persisted(home: string, id: string): Refusal[] {
  try {
    const v = JSON.parse(readFileSync(refusalsPath(home, id), "utf8"));
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

/** Sum packet counts per (destination, protocol, port). */
export function mergeRefusals(a: Refusal[], b: Refusal[]): Refusal[] {
  const by = new Map<string, Refusal>();
  for (const r of [...a, ...b]) {
    const k = `${r.destination}|${r.protocol}|${r.port}`;
    const cur = by.get(k);
    by.set(k, cur ? { ...cur, packets: cur.packets + r.packets } : { ...r });
  }
  return [...by.values()];
}

/** What `workspace logs` shows: refusals of earlier boots plus the running machine's. */
export function networkRefusals(home: string, r: WorkspaceRecord): Refusal[] {
  const live = r.state === "started" && r.net ? readRefusals(r.workspace_id) : [];
  return mergeRefusals(persisted(home, r.workspace_id), live);
}
