/**
 * Pure pieces of tap networking: allow-list validation and splitting, names and addressing,
 * the nftables ruleset (checked by `nft -c` where nft is installed: parse only, no change to
 * the host), refusal parsing, and the QEMU / Firecracker builders fed a tap.
 */
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../firecracker/config.ts";
import { buildFirecrackerConfig, firecrackerKernelArgs } from "../firecracker/index.ts";
import { buildQemuArgv, qemuKernelArgs } from "../qemu/argv.ts";
import type { BootSpec } from "../types.ts";
import { isReserved, parseCidr, splitAllowed, validateAllowList, validateHostName } from "./allow.ts";
import { firstNameserver, parseDnsAnswer, startDnsForwarder } from "./dns.ts";
import { allowAddress, removeTapNetwork } from "./host.ts";
import { buildRuleset, parseRefusals } from "./nft.ts";
import { slotOfGateway, TAP_SLOTS, tableName, tapName, tapNet } from "./tap.ts";

const ID = "ws_0123456789ab";

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("allow-list validation", () => {
  test("CIDRs: addresses become /32, networks are kept, bad ones are INVALID_INPUT", () => {
    expect(validateAllowList([], ["203.0.113.7", "198.51.100.0/24", "203.0.113.7/32"]).cidrs).toEqual([
      "203.0.113.7/32",
      "198.51.100.0/24",
    ]);
    for (const bad of [
      "10.0.0.1/8",
      "300.1.1.1",
      "1.2.3",
      "1.2.3.4/33",
      "::1",
      "fc00::/7",
      "1.2.3.4/8/1",
      "",
      "01.2.3.4",
    ])
      expect(code(() => parseCidr(bad))).toBe("INVALID_INPUT");
  });

  test("host names: LDH labels, lower-cased, not addresses", () => {
    expect(validateHostName("PyPI.org.")).toBe("pypi.org");
    for (const bad of ["-a.com", "a..b", "a_b.com", "1.2.3.4", "x".repeat(64), "", "exa mple.com", "a/b"])
      expect(code(() => validateHostName(bad))).toBe("INVALID_INPUT");
    expect(code(() => validateAllowList(Array.from({ length: 65 }, (_, i) => `h${i}.example`)))).toBe(
      "INVALID_INPUT",
    );
  });

  test("reserved ranges: listed inside a range opens that part; a broad network opens public space only", () => {
    expect(isReserved(parseCidr("169.254.169.254"))).toBe(true);
    expect(isReserved(parseCidr("10.1.0.0/16"))).toBe(true);
    expect(isReserved(parseCidr("0.0.0.0/0"))).toBe(false);
    expect(isReserved(parseCidr("8.8.8.8"))).toBe(false);
    expect(splitAllowed(["0.0.0.0/0", "10.9.0.0/16", "8.8.8.8/32"], ["192.168.1.5", "8.8.8.8"])).toEqual({
      reserved: ["10.9.0.0/16", "192.168.1.5/32"],
      open: ["0.0.0.0/0", "8.8.8.8/32"],
    });
  });
});

describe("names and addressing", () => {
  test("derived from the id; /30 per slot inside 172.30.0.0/16", () => {
    expect(tapName(ID)).toBe("pyt0123456789ab");
    expect(tapName(ID).length).toBeLessThanOrEqual(15);
    expect(tableName(ID)).toBe("pyro_0123456789ab");
    const n = tapNet(ID, 65);
    expect(n).toMatchObject({
      gatewayIp: "172.30.1.5",
      guestIp: "172.30.1.6",
      netmask: "255.255.255.252",
      dns: "172.30.1.5",
      subnet: "172.30.1.4/30",
      guestMac: "02:70:45:67:89:ab",
    });
    expect(slotOfGateway("172.30.1.5")).toBe(65);
    expect(slotOfGateway("172.30.1.6")).toBe(null);
    expect(slotOfGateway("10.0.0.1")).toBe(null);
    expect(tapNet(ID, TAP_SLOTS - 1).guestIp).toBe("172.30.255.254");
    expect(() => tapNet(ID, TAP_SLOTS)).toThrow();
    expect(() => tapName("not-an-id")).toThrow();
  });
});

describe("nftables ruleset", () => {
  const tap = tapNet(ID, 3);
  const allowed = buildRuleset({
    table: tableName(ID),
    tap,
    allow: splitAllowed(["198.51.100.0/24", "10.9.0.0/16"], []),
  });
  const egress = buildRuleset({ table: tableName(ID), tap, allow: null });

  test("one table per workspace; refusals go to the counted sets, then ICMP admin-prohibited", () => {
    expect(allowed).toStartWith(`table inet pyro_0123456789ab {`);
    expect(allowed).toContain(
      "set allow_reserved { type ipv4_addr; flags interval; auto-merge; elements = { 10.9.0.0/16 }; }",
    );
    expect(allowed).toContain("elements = { 198.51.100.0/24 }");
    expect(allowed).toContain("169.254.0.0/16");
    const check = allowed.slice(allowed.indexOf("chain guest_check"), allowed.indexOf("chain guest_refuse"));
    // order matters: listed-reserved, then the reserved refusal, then the open list, then refuse
    expect(
      check
        .split("\n")
        .slice(1, 5)
        .map((l) => l.trim()),
    ).toEqual([
      "ip daddr @allow_reserved accept",
      "ip daddr @reserved goto guest_refuse",
      "ip daddr @allow accept",
      "goto guest_refuse",
    ]);
    expect(allowed).toContain("update @refused { ip daddr . meta l4proto . th dport }");
    expect(allowed).toContain("reject with icmpx admin-prohibited");
    expect(allowed).toContain(`iifname "pyt0123456789ab" ip daddr ${tap.gatewayIp} udp dport 53 accept`);
    expect(allowed).toContain(`iifname "pyt0123456789ab" ip saddr != ${tap.guestIp} drop`);
    expect(allowed).toContain(`ip saddr ${tap.guestIp} oifname != "pyt0123456789ab" masquerade`);
    // plain egress (Firecracker without an allow-list): the check accepts everything
    const egressCheck = egress.slice(
      egress.indexOf("chain guest_check"),
      egress.indexOf("chain guest_refuse"),
    );
    expect(egressCheck).toContain("accept");
    expect(egressCheck).not.toContain("guest_refuse");
  });

  const nft = Bun.which("nft", { PATH: "/usr/sbin:/sbin:/usr/bin" });
  test.skipIf(!nft || process.getuid?.() !== 0)(
    "nft -c accepts both rulesets (parse only, host untouched)",
    () => {
      for (const rs of [allowed, egress]) {
        const p = Bun.spawnSync([nft as string, "-c", "-f", "-"], { stdin: Buffer.from(rs), stderr: "pipe" });
        expect(p.stderr.toString()).toBe("");
        expect(p.exitCode).toBe(0);
      }
    },
  );

  test("refusals from `nft -j list table` JSON; junk is skipped", () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: "1.0.6" } },
        {
          set: {
            name: "refused",
            elem: [
              { elem: { val: { concat: ["10.0.0.5", "tcp", 8080] }, counter: { packets: 3, bytes: 180 } } },
              { elem: { val: { concat: [7, "tcp", 1] } } },
            ],
          },
        },
        {
          set: {
            name: "refused_other",
            elem: [{ elem: { val: { concat: ["169.254.169.254", "icmp"] }, counter: { packets: 1 } } }],
          },
        },
        { set: { name: "allow", elem: ["1.2.3.4"] } },
      ],
    });
    expect(parseRefusals(json)).toEqual([
      { destination: "10.0.0.5", protocol: "tcp", port: 8080, packets: 3 },
      { destination: "169.254.169.254", protocol: "icmp", port: null, packets: 1 },
    ]);
    expect(parseRefusals("not json")).toEqual([]);
    expect(parseRefusals("{}")).toEqual([]);
  });

  test("DNS upstream: the first IPv4 nameserver of resolv.conf", () => {
    expect(firstNameserver("# x\nnameserver fd00::1\nnameserver 10.255.255.53\nnameserver 1.1.1.1\n")).toBe(
      "10.255.255.53",
    );
    expect(firstNameserver("search example\n")).toBe(null);
  });

  test("DNS answers: question and A records (CNAME chain, compression); junk yields nothing", () => {
    const enc = (n: string) =>
      Buffer.concat([
        ...n.split(".").map((l) => Buffer.from([l.length, ...Buffer.from(l)])),
        Buffer.from([0]),
      ]);
    const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);
    const rr = (nameBytes: Buffer, type: number, rdata: Buffer) =>
      Buffer.concat([nameBytes, u16(type), u16(1), Buffer.from([0, 0, 0, 60]), u16(rdata.length), rdata]);
    const msg = Buffer.concat([
      Buffer.from([0x12, 0x34, 0x81, 0x80]),
      u16(1),
      u16(3),
      u16(0),
      u16(0),
      enc("Files.Example.org"),
      u16(1),
      u16(1),
      rr(Buffer.from([0xc0, 12]), 5, enc("cdn.example.net")), // CNAME, owner by pointer to the question
      rr(enc("cdn.example.net"), 1, Buffer.from([203, 0, 113, 9])),
      rr(enc("cdn.example.net"), 1, Buffer.from([203, 0, 113, 10])),
    ]);
    expect(parseDnsAnswer(msg)).toEqual({
      question: "files.example.org",
      a: ["203.0.113.9", "203.0.113.10"],
    });
    const query = Buffer.from(msg);
    query[2] = 0x01; // QR bit clear: a query
    expect(parseDnsAnswer(query)).toEqual({ question: null, a: [] });
    expect(parseDnsAnswer(msg.subarray(0, msg.length - 3)).a).toEqual(["203.0.113.9"]);
    expect(parseDnsAnswer(Buffer.from("short"))).toEqual({ question: null, a: [] });
  });

  test.skipIf(!nft || process.getuid?.() !== 0)(
    "allowAddress adds to the live table's sets (reserved or open)",
    () => {
      const id = "ws_0000000000f1"; // a table only this test makes; no tap device is created
      const load = Bun.spawnSync([nft as string, "-f", "-"], {
        stdin: Buffer.from(
          buildRuleset({ table: tableName(id), tap: tapNet(id, 9), allow: { reserved: [], open: [] } }),
        ),
      });
      expect(load.exitCode).toBe(0);
      try {
        expect(allowAddress(id, "203.0.113.9")).toBe(true);
        expect(allowAddress(id, "10.1.2.3")).toBe(true);
        const list = (set: string) =>
          Bun.spawnSync([nft as string, "list", "set", "inet", tableName(id), set]).stdout.toString();
        expect(list("allow")).toContain("203.0.113.9");
        expect(list("allow_reserved")).toContain("10.1.2.3");
        expect(list("allow")).not.toContain("10.1.2.3");
      } finally {
        removeTapNetwork(id);
      }
      expect(Bun.spawnSync([nft as string, "list", "table", "inet", tableName(id)]).exitCode).not.toBe(0);
    },
  );

  test("DNS forwarder: relays a query to the upstream and its answer back (loopback only)", async () => {
    const upstream = await Bun.udpSocket({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(s, buf, port, addr) {
          s.send(Buffer.concat([buf, Buffer.from("-answer")]), port, addr);
        },
      },
    });
    const fwd = await startDnsForwarder("127.0.0.1", {
      upstream: "127.0.0.1",
      upstreamPort: upstream.port,
      port: 0,
    });
    try {
      const got = Promise.withResolvers<string>();
      const client = await Bun.udpSocket({
        connect: { hostname: "127.0.0.1", port: fwd.port },
        socket: { data: (_s, buf) => got.resolve(Buffer.from(buf).toString()) },
      });
      const query = "0123456789ab-query"; // at least a DNS header's 12 bytes
      client.send(query);
      expect(await Promise.race([got.promise, Bun.sleep(5000).then(() => "timeout")])).toBe(
        `${query}-answer`,
      );
      client.close();
    } finally {
      fwd.stop();
      upstream.close();
    }
  });
});

function spec(over: Partial<BootSpec> = {}): BootSpec {
  return {
    workspaceId: ID,
    runDir: "/run/w",
    workspaceDir: "/ws/w",
    dataDiskPath: "/ws/w/disk.ext4",
    environment: {
      name: "debian:12",
      version: "1",
      kernelPath: "/env/vmlinux",
      rootfsPath: "/env/rootfs.ext4",
    },
    vcpuCount: 1,
    memMib: 512,
    network: true,
    consoleLogPath: "/ws/w/console.log",
    bootTimeoutMs: 30_000,
    ...over,
  };
}

describe("builders fed a tap", () => {
  const tap = tapNet(ID, 3);
  const opts = {
    qemuBin: "qemu",
    agentSocketPath: "/a.sock",
    qmpSocketPath: "/q.sock",
    accelerator: "tcg" as const,
  };

  test("QEMU: a tap netdev without helper scripts, and the /30 as kernel IP autoconfig", () => {
    const argv = buildQemuArgv(spec({ tap }), opts);
    expect(argv).toContain(`tap,id=n0,ifname=${tap.hostDevName},script=no,downscript=no`);
    expect(argv).toContain(`virtio-net-device,netdev=n0,mac=${tap.guestMac}`);
    expect(argv.some((a) => a.startsWith("user,"))).toBe(false);
    const k = qemuKernelArgs(spec({ tap }), "tcg");
    expect(k).toContain(`ip=${tap.guestIp}::${tap.gatewayIp}:255.255.255.252::eth0:off`);
    expect(k).toContain(`pyro.dns=${tap.gatewayIp}`);
    // without a tap: user-mode networking as before; without network: neither
    expect(buildQemuArgv(spec(), opts)).toContain("user,id=n0");
    expect(buildQemuArgv(spec({ network: false, tap }), opts).join(" ")).not.toContain("netdev");
  });

  test("Firecracker: the tap as network-interfaces eth0, valid against the transcribed schema", () => {
    const s = spec({ tap });
    const cfg = buildFirecrackerConfig(s, {
      vsockUdsPath: "/v.sock",
      tap,
      kernelArgs: firecrackerKernelArgs(s, tap),
    });
    expect(cfg["network-interfaces"]).toEqual([
      { iface_id: "eth0", host_dev_name: tap.hostDevName, guest_mac: tap.guestMac },
    ]);
    expect(cfg["boot-source"].boot_args).toContain(
      `ip=${tap.guestIp}::${tap.gatewayIp}:255.255.255.252::eth0:off`,
    );
    expect(() => parseConfig(cfg)).not.toThrow();
  });
});
