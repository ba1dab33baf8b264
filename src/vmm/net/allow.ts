/**
 * Egress allow-lists: validating what the user lists and splitting it for the ruleset.
 *
 * Invariants:
 * - Only IPv4 destinations: tap guests get an IPv4 address and no IPv6 route, so an IPv6
 *   CIDR would be accepted and never matter; it is refused instead (INVALID_INPUT).
 * - A destination in a reserved range (RESERVED_V4: private, loopback, link-local incl. the
 *   169.254.169.254 metadata address, CGNAT, multicast, "this network", reserved) is refused
 *   unless it was listed *inside* that range: `--allow-cidr 10.1.2.0/24` opens that /24, while
 *   a broad `--allow-cidr 0.0.0.0/0` opens the public internet only. Addresses that an
 *   allowed host name resolves to count as listed.
 */
import { PyroError } from "../../protocol/errors.ts";

/** Destinations refused unless listed inside them (RFC 6890 special-purpose IPv4 blocks that matter here). */
export const RESERVED_V4 = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "224.0.0.0/4",
  "240.0.0.0/4",
] as const;

export const MAX_ALLOW_ENTRIES = 64;

/** An IPv4 network, the address already masked to its prefix. */
export interface Cidr4 {
  addr: number; // unsigned 32-bit
  prefix: number;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function parseIpv4(s: string): number | null {
  const parts = s.split(".");
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return null;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
}

const maskOf = (prefix: number) => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

/** "A.B.C.D" (a /32) or "A.B.C.D/N"; host bits must be zero ("10.0.0.1/8" is refused as ambiguous). */
export function parseCidr(s: string): Cidr4 {
  const bad = (why: string) =>
    new PyroError("INVALID_INPUT", `invalid allow_cidrs entry "${s}": ${why}`, {
      hint: "give an IPv4 address or network, e.g. 203.0.113.7 or 198.51.100.0/24",
    });
  if (s.includes(":")) throw bad("IPv6 is not supported (guests get IPv4 only)");
  const [ip, len, ...rest] = s.split("/");
  if (rest.length) throw bad("more than one '/'");
  const addr = parseIpv4(ip ?? "");
  if (addr === null) throw bad("not an IPv4 address");
  const prefix = len === undefined ? 32 : /^(3[0-2]|[12]?\d)$/.test(len) ? Number(len) : -1;
  if (prefix < 0) throw bad("the prefix length must be 0–32");
  if ((addr & ~maskOf(prefix)) >>> 0 !== 0) {
    throw bad(`host bits are set (did you mean ${formatIpv4((addr & maskOf(prefix)) >>> 0)}/${prefix}?)`);
  }
  return { addr, prefix };
}

export function formatCidr(c: Cidr4): string {
  return `${formatIpv4(c.addr)}/${c.prefix}`;
}

/** Is `inner` entirely inside `outer`? */
export function cidrWithin(inner: Cidr4, outer: Cidr4): boolean {
  return inner.prefix >= outer.prefix && (inner.addr & maskOf(outer.prefix)) >>> 0 === outer.addr;
}

const RESERVED = RESERVED_V4.map(parseCidr);

/** Does the network lie inside one reserved range (so listing it opens that part of the range)? */
export function isReserved(c: Cidr4): boolean {
  return RESERVED.some((r) => cidrWithin(c, r));
}

/** DNS host names: dot-separated LDH labels (1–63 chars), at most 253 in all, not an IP. */
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
export function validateHostName(s: string): string {
  const h = s.toLowerCase().replace(/\.$/, "");
  const ok =
    h.length > 0 && h.length <= 253 && h.split(".").every((l) => LABEL.test(l)) && !/^[\d.]+$/.test(h);
  if (!ok) {
    throw new PyroError("INVALID_INPUT", `invalid allow_hosts entry "${s}": not a DNS host name`, {
      hint: "give a name such as pypi.org; addresses and networks go in allow_cidrs (--allow-cidr)",
    });
  }
  return h;
}

export interface AllowList {
  hosts: string[];
  cidrs: string[];
}

/** Validate and normalise both lists (deduplicated, order kept); throws INVALID_INPUT. */
export function validateAllowList(hosts: string[] = [], cidrs: string[] = []): AllowList {
  if (hosts.length + cidrs.length > MAX_ALLOW_ENTRIES) {
    throw new PyroError(
      "INVALID_INPUT",
      `at most ${MAX_ALLOW_ENTRIES} allow-list entries (hosts and CIDRs together)`,
    );
  }
  return {
    hosts: [...new Set(hosts.map(validateHostName))],
    cidrs: [...new Set(cidrs.map((c) => formatCidr(parseCidr(c))))],
  };
}

/** The ruleset's two sets: networks listed inside a reserved range, and the rest. */
export function splitAllowed(cidrs: string[], resolved: string[]): { reserved: string[]; open: string[] } {
  const out = { reserved: [] as string[], open: [] as string[] };
  for (const s of [...cidrs, ...resolved.map((a) => `${a}/32`)]) {
    const c = parseCidr(s);
    const txt = formatCidr(c);
    const into = isReserved(c) ? out.reserved : out.open;
    if (!into.includes(txt)) into.push(txt);
  }
  return out;
}
