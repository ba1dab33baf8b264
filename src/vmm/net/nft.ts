/**
 * The nftables ruleset of one workspace's tap (pure text; host.ts loads it with `nft -f -`).
 *
 * One table per workspace, `inet pyro_<id>`, holding everything of that workspace: deleting
 * the table removes every rule, set and NAT entry at once (the cleanup is one command).
 * What it enforces, for packets arriving from the tap:
 * - replies (conntrack established/related) pass; IPv6 is dropped (guests are IPv4 only);
 *   a source other than the guest's own address is dropped (no spoofing);
 * - DNS (UDP 53) to the tap's host address passes (the supervisor's forwarder answers there);
 * - with an allow-list: destinations listed inside a reserved range pass, the rest of the
 *   reserved ranges is refused, other listed destinations pass, everything else is refused;
 *   without one (plain egress): everything passes;
 * - a refusal adds (destination, protocol, port) to the `refused` set (packet counters per
 *   element) and answers with ICMP admin-prohibited, so the guest fails fast instead of
 *   timing out. pyro reads that set to report refusals (no kernel log needed).
 * Packets towards the tap pass only as replies; traffic leaving through any other interface is
 * masqueraded to the host's address.
 */
import { RESERVED_V4 } from "./allow.ts";
import type { TapNet } from "./tap.ts";

export interface RulesetInput {
  table: string;
  tap: TapNet;
  /** null: plain egress (everything allowed); otherwise the two allowed sets (allow.ts splitAllowed) */
  allow: { reserved: string[]; open: string[] } | null;
}

const elements = (xs: readonly string[]) => (xs.length ? ` elements = { ${xs.join(", ")} };` : "");

export function buildRuleset({ table, tap, allow }: RulesetInput): string {
  const t = JSON.stringify(tap.hostDevName);
  const check = allow
    ? [
        "ip daddr @allow_reserved accept",
        "ip daddr @reserved goto guest_refuse",
        "ip daddr @allow accept",
        "goto guest_refuse",
      ]
    : ["accept"];
  // First in both chains a packet from the tap meets: replies pass, IPv6 and spoofed sources drop.
  const fromGuest = [
    `    iifname ${t} ct state established,related accept`,
    `    iifname ${t} meta nfproto ipv6 drop`,
    `    iifname ${t} ip saddr != ${tap.guestIp} drop`,
  ];
  const lines = [
    `table inet ${table} {`,
    `  set allow_reserved { type ipv4_addr; flags interval; auto-merge;${elements(allow?.reserved ?? [])} }`,
    `  set reserved { type ipv4_addr; flags interval;${elements(RESERVED_V4)} }`,
    `  set allow { type ipv4_addr; flags interval; auto-merge;${elements(allow?.open ?? [])} }`,
    "  set refused { type ipv4_addr . inet_proto . inet_service; flags dynamic; size 4096; counter; }",
    "  set refused_other { type ipv4_addr . inet_proto; flags dynamic; size 1024; counter; }",
    "  chain guest_check {",
    ...check.map((r) => `    ${r}`),
    "  }",
    "  chain guest_refuse {",
    "    meta l4proto { tcp, udp } update @refused { ip daddr . meta l4proto . th dport }",
    "    meta l4proto != { tcp, udp } update @refused_other { ip daddr . meta l4proto }",
    "    reject with icmpx admin-prohibited",
    "  }",
    "  chain guest_in {",
    "    type filter hook input priority filter - 5; policy accept;",
    ...fromGuest,
    `    iifname ${t} ip daddr ${tap.gatewayIp} udp dport 53 accept`,
    `    iifname ${t} jump guest_check`,
    "  }",
    "  chain guest_forward {",
    "    type filter hook forward priority filter - 5; policy accept;",
    ...fromGuest,
    `    iifname ${t} jump guest_check`,
    `    oifname ${t} ct state established,related accept`,
    `    oifname ${t} drop`,
    "  }",
    "  chain guest_nat {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    ip saddr ${tap.guestIp} oifname != ${t} masquerade`,
    "  }",
    "}",
  ];
  return `${lines.join("\n")}\n`;
}

/** One refused destination as pyro reports it. */
export interface Refusal {
  destination: string;
  protocol: string;
  /** TCP/UDP destination port; null for other protocols (ICMP...) */
  port: number | null;
  packets: number;
}

/**
 * The refusals in `nft -j list table inet T` output (the two `refused*` sets' elements).
 * Anything unexpected in the JSON is skipped, never thrown.
 */
export function parseRefusals(json: string): Refusal[] {
  let doc: any;
  try {
    doc = JSON.parse(json);
  } catch {
    return [];
  }
  const out: Refusal[] = [];
  for (const item of Array.isArray(doc?.nftables) ? doc.nftables : []) {
    const set = item?.set;
    if (!set || (set.name !== "refused" && set.name !== "refused_other")) continue;
    for (const e of Array.isArray(set.elem) ? set.elem : []) {
      const val = e?.elem?.val ?? e?.val ?? e;
      const parts: unknown[] = Array.isArray(val?.concat) ? val.concat : [];
      const packets = Number(e?.elem?.counter?.packets ?? 0);
      const [dst, proto, port] = parts;
      if (typeof dst !== "string") continue;
      out.push({
        destination: dst,
        protocol: String(proto),
        port: typeof port === "number" ? port : null,
        packets,
      });
    }
  }
  return out;
}
