/**
 * Egress allow-list input, through the compiled CLI (no guest boots): bad input gets a stable
 * code and leaves nothing behind (no workspace directory, no tap, no nftables table).
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { checkNetworkInput, mergeRefusals, resolveAllowedHosts } from "../src/manager/network.ts";
import { ensureBuilt, freshHome, pyro } from "./helpers.ts";

let home = "";
beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
});

const workspaces = () => (existsSync(join(home, "workspaces")) ? readdirSync(join(home, "workspaces")) : []);
const pyroTaps = () => readdirSync("/sys/class/net").filter((n) => n.startsWith("pyt"));

describe("egress allow-list input", () => {
  const cases: Array<[string, string[], string, RegExp]> = [
    ["a CIDR with host bits", ["--allow-cidr", "10.0.0.1/8"], "INVALID_INPUT", /host bits/],
    ["an IPv6 network", ["--allow-cidr", "fc00::/7"], "INVALID_INPUT", /IPv6/],
    ["not an address", ["--allow-cidr", "300.1.2.3"], "INVALID_INPUT", /not an IPv4 address/],
    ["an invalid host name", ["--allow-host", "bad_name.example"], "INVALID_INPUT", /not a DNS host name/],
    [
      "an allow-list with policy off",
      ["--allow-cidr", "203.0.113.7", "--network-policy", "off"],
      "INVALID_INPUT",
      /network_policy is off/,
    ],
    [
      "an allow-list in host compat",
      ["--allow-host-compat", "--allow-cidr", "203.0.113.7"],
      "NETWORK_UNSUPPORTED",
      /host compat cannot restrict egress/,
    ],
  ];
  for (const [what, flags, code, message] of cases) {
    test(`${what}: ${code}, nothing made`, async () => {
      const tapsBefore = pyroTaps();
      const r = await pyro(["workspace", "create", "--json", ...flags], { home, env: { PYRO_BACKEND: "" } });
      expect(r.json?.code).toBe(code);
      expect(r.json?.message).toMatch(message);
      expect(r.code).toBe(code === "INVALID_INPUT" ? 64 : 69);
      expect(workspaces().filter((n) => n.startsWith("ws_"))).toEqual([]);
      expect(pyroTaps()).toEqual(tapsBefore);
    });
  }

  test("doctor says whether tap networking (allow-lists) is available here", async () => {
    const r = await pyro(["doctor", "--json"], { home });
    const checks = (r.json?.checks ?? []) as Array<Record<string, unknown>>;
    const tap = checks.find((c) => c.name === "tap_network");
    // this test runs as root with iproute2 and nftables (scripts/setup.sh): available
    expect(tap).toMatchObject({
      ok: true,
      detail: expect.stringContaining("tap devices + nftables available"),
    });
    expect(tap?.warning).toBeUndefined();
  });

  test("the flags are --allow-host and --allow-cidr (repeatable) in workspace create --help", async () => {
    const r = await pyro(["workspace", "create", "--help"], { home });
    expect(r.stdout + r.stderr).toContain("--allow-host");
    expect(r.stdout + r.stderr).toContain("--allow-cidr");
  });
});

describe("allow-list semantics (manager, no guest)", () => {
  test("an allow-list implies egress; no list keeps the policy given (default off)", () => {
    expect(checkNetworkInput({ allow_cidrs: ["203.0.113.7"] }).policy).toBe("egress");
    expect(
      checkNetworkInput({ allow_cidrs: ["203.0.113.7"], network_policy: "egress+published-ports" }).policy,
    ).toBe("egress+published-ports");
    expect(checkNetworkInput({})).toEqual({ policy: "off", allow: null });
    expect(checkNetworkInput({ network_policy: "egress" })).toEqual({ policy: "egress", allow: null });
  });

  test("host names resolve on the host (localhost: /etc/hosts, no DNS traffic)", async () => {
    expect(await resolveAllowedHosts(["localhost"])).toContain("127.0.0.1");
  });

  test("refusals are summed per destination across boots", () => {
    const a = { destination: "10.0.0.5", protocol: "tcp", port: 80, packets: 2 };
    expect(
      mergeRefusals(
        [a],
        [
          { ...a, packets: 3 },
          { ...a, port: 443, packets: 1 },
        ],
      ),
    ).toEqual([
      { ...a, packets: 5 },
      { ...a, port: 443, packets: 1 },
    ]);
  });
});
