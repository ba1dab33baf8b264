/**
 * Egress allow-lists on one-shot `run` (allow_hosts / allow_cidrs, as on workspace create):
 * the same validation and error codes on every face, and on a real guest the same tap and
 * nftables table as a workspace's, named after the run and gone when it ends — also when the
 * run was killed outright (the next run removes them). Only servers on this machine are
 * reached (test/net-local.ts). Boots: three (allowed probe, unlisted probe, the killed run).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Pyro } from "../src/sdk/index.ts";
import { needs } from "./capabilities.ts";
import { guestHome, probeReached } from "./guest-env.ts";
import { ensureBuilt, freshHome, mcpSession, PYRO, pyro, waitFor } from "./helpers.ts";
import { type LocalServers, localServers, probeLine, tableExists, tapExists } from "./net-local.ts";

const HC = { PYRO_BACKEND: "host" };

beforeAll(async () => {
  await ensureBuilt();
}, 300_000);

describe("run allow-lists: validation on every face (no boot)", () => {
  test("CLI: a malformed entry and an unresolvable name are INVALID_INPUT; host compat is NETWORK_UNSUPPORTED", async () => {
    const home = freshHome();
    const bad = await pyro(["run", "debian:12", "--json", "--allow-cidr", "300.1.1.1", "--", "true"], {
      home,
      env: HC,
    });
    expect(bad.code).toBe(64);
    expect(bad.json.code).toBe("INVALID_INPUT");
    expect(bad.json.message).toContain("300.1.1.1");
    const unresolved = await pyro(
      ["run", "debian:12", "--json", "--allow-host", "no-such-host.invalid", "--", "true"],
      { home, env: HC },
    );
    expect(unresolved.json.code).toBe("INVALID_INPUT");
    expect(unresolved.json.message).toContain("does not resolve");
    const hc = await pyro(
      ["run", "debian:12", "--json", "--allow-host-compat", "--allow-cidr", "198.51.100.7", "--", "true"],
      { home, env: HC },
    );
    expect(hc.json.code).toBe("NETWORK_UNSUPPORTED");
    // the probe: the same run without the allow-list runs (host compat)
    const plain = await pyro(["run", "debian:12", "--json", "--allow-host-compat", "--", "echo", "ran"], {
      home,
      env: HC,
    });
    expect(plain.json.stdout).toBe("ran\n");
    expect(existsSync(join(home, "runs")) ? readdirSync(join(home, "runs")) : []).toEqual([]);
    // --help names the flags
    const help = await pyro(["run", "--help"], { home });
    expect(help.stdout).toContain("--allow-host");
    expect(help.stdout).toContain("--allow-cidr");
  }, 120_000);

  test("SDK and MCP: network false with an allow-list is INVALID_INPUT; the fields reach vm_run", async () => {
    const home = freshHome();
    const sdk = new Pyro({ home, env: { ...process.env, ...HC } });
    const err = await sdk
      .run({ environment: "debian:12", command: "true", network: false, allow_cidrs: ["198.51.100.7"] })
      .catch((e) => e);
    expect(err.code).toBe("INVALID_INPUT");
    expect(err.message).toContain("network is false");
    const hc = await sdk
      .run({
        environment: "debian:12",
        command: "true",
        allow_host_compat: true,
        allow_cidrs: ["198.51.100.7"],
      })
      .catch((e) => e);
    expect(hc.code).toBe("NETWORK_UNSUPPORTED");
    const mcp = await mcpSession("run-allow", ["--profile", "vm-run"], { home });
    try {
      const tools = await mcp.client.listTools();
      const vmRun = tools.tools.find((t) => t.name === "vm_run");
      expect(Object.keys(vmRun?.inputSchema.properties ?? {})).toEqual(
        expect.arrayContaining(["allow_hosts", "allow_cidrs"]),
      );
      const e = await mcp.callError("vm_run", {
        environment: "debian:12",
        command: "true",
        network: false,
        allow_hosts: ["example.com"],
      });
      expect(e.code).toBe("INVALID_INPUT");
    } finally {
      await mcp.client.close();
    }
  }, 120_000);
});

const net = needs("guest", "tap-network");

net.describe("real guest: run with an egress allow-list", () => {
  let home = "";
  let local: LocalServers;
  beforeAll(async () => {
    home = await guestHome();
    local = localServers();
  }, 900_000);
  afterAll(() => local?.stop());

  /** Run a probe line with --allow-cidr for `allowed`, catching the run's id (its run directory) on the way. */
  async function runProbe(line: string): Promise<{ r: Awaited<ReturnType<typeof pyro>>; id: string }> {
    const runs = join(home, "runs");
    const before = new Set(existsSync(runs) ? readdirSync(runs) : []);
    let id = "";
    let done = false;
    const watch = (async () => {
      while (!done && !id) {
        const fresh = (existsSync(runs) ? readdirSync(runs) : []).filter((n) => !before.has(n));
        if (fresh.length === 1) id = fresh[0] as string;
        await Bun.sleep(20);
      }
    })();
    const r = await pyro(
      [
        "run",
        "debian:12",
        "--json",
        "--timeout-seconds",
        "20",
        "--allow-cidr",
        local.allowed,
        "--",
        "bash",
        "-c",
        line,
      ],
      { home },
    );
    done = true;
    await watch;
    return { r, id };
  }

  net.test(
    "real guest: run --allow-cidr reaches the listed server, not an unlisted one, and leaves no tap or table",
    async () => {
      const [a, b] = local.servers;
      // the probe works: the listed server answers
      const ok = await runProbe(probeLine(local.allowed, a.port as number));
      expect(probeReached(ok.r, `hello-from-${local.allowed}`)).toBe(true);
      expect(ok.r.json.backend).toBe("qemu");
      // a tap network boots cold (as a workspace's does)
      expect(ok.r.json.boot).toBe("cold");
      // the run had its own tap and table (named after its id), gone now
      expect(ok.id).toMatch(/^run_[0-9a-f]{12}$/);
      expect(tapExists(ok.id)).toBe(false);
      expect(tableExists(ok.id)).toBe(false);
      // an unlisted local server is refused
      const refused = await runProbe(probeLine(local.other, b.port as number));
      expect(probeReached(refused.r, `hello-from-${local.other}`)).toBe(false);
      expect(refused.r.json.stderr).toMatch(/No route to host|Connection refused|Permission denied/);
      expect(tapExists(refused.id)).toBe(false);
      expect(tableExists(refused.id)).toBe(false);
      expect(readdirSync(join(home, "runs")).filter((n) => n === ok.id || n === refused.id)).toEqual([]);
    },
    300_000,
  );

  net.test(
    "real guest: a run killed outright leaves its tap and table to the next run, which removes them",
    async () => {
      const runs = join(home, "runs");
      const before = new Set(existsSync(runs) ? readdirSync(runs) : []);
      const p = Bun.spawn(
        [
          PYRO,
          "run",
          "debian:12",
          "--json",
          "--allow-cidr",
          local.allowed,
          "--",
          "sh",
          "-c",
          "echo up; sleep 120",
        ],
        {
          env: { ...(process.env as Record<string, string>), PYRO_HOME: home },
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      const mine = () => (existsSync(runs) ? readdirSync(runs) : []).filter((n) => !before.has(n));
      expect(await waitFor(() => mine().length === 1, 120_000)).toBe(true);
      const id = mine()[0] as string;
      // the probe: the tap and table exist while it runs
      expect(await waitFor(() => tapExists(id) && tableExists(id), 120_000)).toBe(true);
      p.kill("SIGKILL");
      await p.exited;
      // its QEMU goes with it (pdeathsig); the tap, table and run directory stay
      expect(tapExists(id)).toBe(true);
      expect(tableExists(id)).toBe(true);
      // the next run (any backend) removes them
      const next = await pyro(["run", "debian:12", "--json", "--allow-host-compat", "--", "true"], {
        home,
        env: HC,
      });
      expect(next.code).toBe(0);
      expect(tapExists(id)).toBe(false);
      expect(tableExists(id)).toBe(false);
      expect(existsSync(join(runs, id))).toBe(false);
    },
    300_000,
  );
});
