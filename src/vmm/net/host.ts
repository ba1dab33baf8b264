/**
 * Creating and removing a workspace's tap network on this host (`ip`, `nft`, argv arrays only).
 *
 * Invariants:
 * - Creation runs under one host-wide lock (NET_LOCK, shared by every PYRO_HOME), so two
 *   machines never take the same slot; the caller records the names (`beforeCreate`) before
 *   anything exists, so whoever finds the record later can remove them.
 * - Removal is idempotent and never throws: a missing table or device is already removed.
 *   It is synchronous so record repair and file removal can call it anywhere.
 * - A failed creation removes what it made before throwing NETWORK_UNSUPPORTED.
 * - net.ipv4.ip_forward is switched on (never off again: other software may rely on it).
 */
import { accessSync, constants, existsSync, readFileSync, writeFileSync } from "node:fs";
import { withLock } from "../../base/lock.ts";
import { PyroError } from "../../protocol/errors.ts";
import { isReserved, parseCidr } from "./allow.ts";
import { buildRuleset, parseRefusals, type Refusal } from "./nft.ts";
import { slotOfGateway, TAP_SLOTS, type TapNet, tableName, tapName, tapNet } from "./tap.ts";

/** Host-wide: slots are a host resource, not a PYRO_HOME one. */
export const NET_LOCK = "/run/pyro/net.lock";

const SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function which(bin: string): string | null {
  return Bun.which(bin, { PATH: `${process.env.PATH ?? ""}:${SBIN_PATH}` });
}

/** Can this host make tap networks? null when it can, else why not (for errors and doctor). */
export function tapUnavailableReason(): string | null {
  if (process.getuid?.() !== 0)
    return "tap networking needs root (pyro creates tap devices and nftables tables)";
  if (!which("ip")) return "`ip` (iproute2) is not installed";
  if (!which("nft")) return "`nft` (nftables) is not installed";
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
  } catch {
    return "/dev/net/tun is missing (modprobe tun)";
  }
  return null;
}

interface Ran {
  ok: boolean;
  stdout: string;
  stderr: string;
}

function run(argv: string[], stdin?: string): Ran {
  const bin = which(argv[0] as string);
  if (!bin) return { ok: false, stdout: "", stderr: `${argv[0]} not found` };
  const p = Bun.spawnSync([bin, ...argv.slice(1)], {
    stdin: stdin === undefined ? "ignore" : Buffer.from(stdin),
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: SBIN_PATH },
  });
  return { ok: p.exitCode === 0, stdout: p.stdout.toString(), stderr: p.stderr.toString().trim() };
}

function must(argv: string[], stdin?: string): string {
  const r = run(argv, stdin);
  if (!r.ok) {
    throw new PyroError("NETWORK_UNSUPPORTED", `\`${argv.join(" ")}\` failed: ${r.stderr || "no output"}`, {
      hint: "`pyro doctor` checks tap networking (root, iproute2, nftables, /dev/net/tun)",
    });
  }
  return r.stdout;
}

/** Slots whose host address some interface already holds (ours from any home, or anyone's). */
function usedSlots(): Set<number> {
  const used = new Set<number>();
  let doc: unknown;
  try {
    doc = JSON.parse(must(["ip", "-j", "-4", "addr", "show"]));
  } catch {
    doc = [];
  }
  for (const link of Array.isArray(doc) ? doc : []) {
    for (const a of (link as { addr_info?: { local?: string }[] }).addr_info ?? []) {
      const s = a.local ? slotOfGateway(a.local) : null;
      if (s !== null) used.add(s);
    }
  }
  return used;
}

export interface CreateTapOptions {
  workspaceId: string;
  /** null: plain egress; else the allowed sets (allow.ts splitAllowed) */
  allow: { reserved: string[]; open: string[] } | null;
  /** The slot of this workspace's previous boot: taken again when free (a resumed guest keeps its address). */
  preferSlot?: number;
  /** Called with the slot before the device or table exists (record them first). */
  beforeCreate: (net: TapNet) => Promise<unknown> | undefined;
}

export async function createTapNetwork(opts: CreateTapOptions): Promise<TapNet> {
  const why = tapUnavailableReason();
  if (why) {
    throw new PyroError("NETWORK_UNSUPPORTED", why, {
      hint: "run pyro as root with nftables installed, or use --network-policy egress without an allow-list (QEMU user-mode networking)",
    });
  }
  const id = opts.workspaceId;
  return withLock(NET_LOCK, async () => {
    // A leftover of this very workspace (a crash between create and record) goes first.
    removeTapNetwork(id);
    const used = usedSlots();
    let slot = 0;
    if (opts.preferSlot !== undefined && opts.preferSlot < TAP_SLOTS && !used.has(opts.preferSlot))
      slot = opts.preferSlot;
    else while (used.has(slot)) slot++;
    if (slot >= TAP_SLOTS) throw new PyroError("NETWORK_UNSUPPORTED", "every tap address slot is in use");
    const net = tapNet(id, slot);
    await opts.beforeCreate(net);
    try {
      must(["ip", "tuntap", "add", "dev", net.hostDevName, "mode", "tap"]);
      must(["ip", "addr", "add", `${net.gatewayIp}/30`, "dev", net.hostDevName]);
      must(["ip", "link", "set", net.hostDevName, "up"]);
      must(["nft", "-f", "-"], buildRuleset({ table: tableName(id), tap: net, allow: opts.allow }));
      enableForwarding();
      return net;
    } catch (err) {
      removeTapNetwork(id);
      throw err;
    }
  });
}

function enableForwarding(): void {
  const p = "/proc/sys/net/ipv4/ip_forward";
  if (readFileSync(p, "utf8").trim() !== "1") writeFileSync(p, "1\n");
}

/** Remove the workspace's table and tap (whatever of them exists). Never throws. */
export function removeTapNetwork(workspaceId: string): void {
  run(["nft", "delete", "table", "inet", tableName(workspaceId)]);
  if (existsSync(`/sys/class/net/${tapName(workspaceId)}`)) run(["ip", "link", "del", tapName(workspaceId)]);
}

/**
 * Allow one more address in the workspace's live table (an allowed name's DNS answer): into
 * `allow_reserved` when it lies in a reserved range (the name was listed), else `allow`.
 */
export function allowAddress(workspaceId: string, addr: string): boolean {
  const set = isReserved(parseCidr(addr)) ? "allow_reserved" : "allow";
  return run(["nft", "add", "element", "inet", tableName(workspaceId), set, `{ ${addr} }`]).ok;
}

/** The refusals counted in the workspace's live table ([] when there is none). */
export function readRefusals(workspaceId: string): Refusal[] {
  const r = run(["nft", "-j", "list", "table", "inet", tableName(workspaceId)]);
  return r.ok ? parseRefusals(r.stdout) : [];
}
