/**
 * Names and addresses of a workspace's tap network (pure; src/vmm/net/host.ts creates them).
 *
 * Addressing: TAP_NET_BASE (172.30.0.0/16) is cut into /30 slots, one per running networked
 * VM on this host: slot s = 172.30.0.0 + 4·s; host side .1, guest .2 (netmask
 * 255.255.255.252), 16384 slots. The slot is chosen when the machine boots, host-wide (any
 * PYRO_HOME), as the lowest one whose host address no interface holds.
 * Names: the tap is `pyt` + the id's 12 hex digits (15 bytes, IFNAMSIZ-1); the nftables table
 * is `inet pyro_<id>`. Both follow from the workspace id alone, so two homes never collide.
 */
import { formatIpv4, parseIpv4 } from "./allow.ts";

export const TAP_NET_BASE = "172.30.0.0";
export const TAP_NET_PREFIX = 16;
export const TAP_SLOTS = 2 ** (32 - TAP_NET_PREFIX) / 4;

/** The tap device pyro created for a machine, with the guest's static addressing. */
export interface TapNet {
  hostDevName: string;
  guestMac: string;
  /** the guest's address; the host's end (`gatewayIp`) also answers DNS for it */
  guestIp: string;
  gatewayIp: string;
  netmask: string;
  dns: string;
  /** the /30 in CIDR form */
  subnet: string;
  slot: number;
}

function idHex(workspaceId: string): string {
  // a workspace's ws_<hex>, or a one-shot run's run_<hex> (src/manager/run.ts)
  const hex = workspaceId.replace(/^(?:ws|run)_/, "");
  if (!/^[0-9a-f]{12}$/.test(hex)) throw new Error(`not a workspace id: ${workspaceId}`);
  return hex;
}

export const tapName = (workspaceId: string) => `pyt${idHex(workspaceId)}`;
export const tableName = (workspaceId: string) => `pyro_${idHex(workspaceId)}`;

export function tapNet(workspaceId: string, slot: number): TapNet {
  if (!Number.isInteger(slot) || slot < 0 || slot >= TAP_SLOTS)
    throw new Error(`tap slot out of range: ${slot}`);
  const base = (parseIpv4(TAP_NET_BASE) as number) + slot * 4;
  const hex = idHex(workspaceId);
  const gatewayIp = formatIpv4(base + 1);
  return {
    hostDevName: tapName(workspaceId),
    // locally administered, unicast; the id's last 4 bytes
    guestMac: `02:70:${hex.slice(4).match(/../g)?.join(":")}`,
    guestIp: formatIpv4(base + 2),
    gatewayIp,
    netmask: "255.255.255.252",
    dns: gatewayIp,
    subnet: `${formatIpv4(base)}/30`,
    slot,
  };
}

/** The slot whose host address is `addr`, or null when it is not one of ours. */
export function slotOfGateway(addr: string): number | null {
  const n = parseIpv4(addr);
  const base = parseIpv4(TAP_NET_BASE) as number;
  if (n === null || n < base || n >= base + TAP_SLOTS * 4 || (n - base) % 4 !== 1) return null;
  return (n - base - 1) / 4;
}
