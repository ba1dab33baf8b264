/**
 * Tap networking on real guests (QEMU under TCG here; the same host plumbing serves
 * Firecracker). Only servers on this machine are reached: the test puts two addresses from
 * TEST-NET-2 on a veth pair it creates, runs one HTTP server on each, and removes both after.
 * - an allow-list workspace reaches the listed server (the probe proves it works) and is
 *   refused the other, and the refusal shows in `workspace logs`;
 * - policy off cannot reach the same server with the same probe;
 * - kill -9 of the supervisor, then of the VMM: after the next pyro command no tap device and
 *   no nftables table of the workspace remain.
 * - an allowed host name follows the guest's own lookups (a DNS server on loopback moves it);
 * Boots: four (allow-list, off, the restart for the VMM kill, the host-name workspace).
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { needs } from "./capabilities.ts";
import { guestHome, probeReached } from "./guest-env.ts";
import { pyro, waitFor } from "./helpers.ts";
import {
  type LocalServers,
  localServers,
  probeLine,
  tableExists,
  tableOf,
  tapExists,
  tapOf,
} from "./net-local.ts";

const net = needs("guest", "tap-network");

net.describe("real guest: tap network with an egress allow-list", () => {
  let home = "";
  let local: LocalServers;
  let allowed = "";
  let other = "";
  let servers: LocalServers["servers"] | [] = [];
  const ids: string[] = [];
  const record = (id: string) =>
    JSON.parse(readFileSync(join(home, "workspaces", id, "workspace.json"), "utf8"));

  beforeAll(async () => {
    home = await guestHome();
    local = localServers();
    ({ allowed, other, servers } = local);
  });
  afterAll(async () => {
    for (const id of ids) await pyro(["workspace", "delete", id], { home });
    local?.stop();
  });

  net.test(
    "real guest: --allow-cidr reaches the listed server only; off reaches nothing; refusals in workspace logs",
    async () => {
      const [a, b] = servers as [ReturnType<typeof Bun.serve>, ReturnType<typeof Bun.serve>];
      const c = await pyro(["workspace", "create", "debian:12", "--json", "--allow-cidr", `${allowed}`], {
        home,
      });
      expect(c.code).toBe(0);
      const id = c.json.workspace_id as string;
      ids.push(id);
      // an allow-list implies egress; the record shows the normalised list
      expect(c.json.network_policy).toBe("egress");
      expect(c.json.allow_cidrs).toEqual([`${allowed}/32`]);
      expect(c.json.backend).toBe("qemu");
      expect(tapExists(id)).toBe(true);
      expect(tableExists(id)).toBe(true);

      const exec = (line: string) =>
        pyro(["workspace", "exec", id, "--json", "--timeout-seconds", "20", "--", "bash", "-c", line], {
          home,
        });
      // the probe works: the listed server answers
      const ok = await exec(probeLine(allowed, a.port as number));
      expect(probeReached(ok, `hello-from-${allowed}`)).toBe(true);
      // the other local server is refused (fast: ICMP admin-prohibited, no timeout)
      const refused = await exec(probeLine(other, b.port as number));
      expect(probeReached(refused, `hello-from-${other}`)).toBe(false);
      expect(refused.json.stderr).toMatch(/No route to host|Connection refused|Permission denied/);
      // the metadata address and the tap's own host address (beyond DNS) are refused too
      const meta = await exec(probeLine("169.254.169.254", 80));
      expect(probeReached(meta, "never")).toBe(false);
      // DNS goes to the tap's host end, where the supervisor's forwarder listens
      const resolv = await exec("cat /etc/resolv.conf");
      expect(resolv.json.stdout).toContain(`nameserver 172.30.`);

      const logs = await pyro(["workspace", "logs", id, "--json"], { home });
      expect(logs.code).toBe(0);
      const refusals = logs.json.network_refusals as Array<Record<string, unknown>>;
      expect(refusals).toContainEqual(
        expect.objectContaining({ destination: other, protocol: "tcp", port: b.port }),
      );
      expect(refusals).toContainEqual(
        expect.objectContaining({ destination: "169.254.169.254", protocol: "tcp", port: 80 }),
      );
      expect(refusals.some((r) => r.destination === allowed)).toBe(false);
      const human = await pyro(["workspace", "logs", id], { home });
      expect(human.stdout).toContain(`refused by the egress allow-list`);
      expect(human.stdout).toContain(`tcp ${other}:${b.port}`);

      // policy off: the same probe to the same (reachable above) server fails
      const off = await pyro(["workspace", "create", "debian:12", "--json"], { home });
      expect(off.code).toBe(0);
      ids.push(off.json.workspace_id);
      expect(off.json.network_policy).toBe("off");
      const offProbe = await pyro(
        [
          "workspace",
          "exec",
          off.json.workspace_id,
          "--json",
          "--timeout-seconds",
          "20",
          "--",
          "bash",
          "-c",
          probeLine(allowed, a.port as number),
        ],
        { home },
      );
      expect(probeReached(offProbe, `hello-from-${allowed}`)).toBe(false);
      expect(offProbe.json.stderr).toMatch(/Network is unreachable/);
      expect(tapExists(off.json.workspace_id)).toBe(false);
      await pyro(["workspace", "delete", off.json.workspace_id], { home });
    },
    240_000,
  );

  net.test(
    "real guest: kill -9 of the supervisor, then of the VMM: no tap and no nftables table remain",
    async () => {
      const id = ids[0];
      if (!id) throw new Error("the allow-list workspace was not created");
      const before = record(id);
      expect(before.state).toBe("started");
      expect(before.net).toEqual({ tap: tapOf(id), table: `inet ${tableOf(id)}`, slot: expect.any(Number) });
      process.kill(before.supervisor_pid, "SIGKILL");
      // the VMM follows its supervisor (pdeathsig); the tap and table stay until a pyro command repairs
      expect(await waitFor(() => !existsSync(`/proc/${before.vmm_pid}`), 15000)).toBe(true);
      expect(tapExists(id)).toBe(true);
      const st = await pyro(["workspace", "status", id, "--json"], { home });
      expect(st.json.state).toBe("stopped");
      expect(st.json.stop_reason).toMatch(/supervisor died/);
      expect(tapExists(id)).toBe(false);
      expect(tableExists(id)).toBe(false);
      // refusals counted before the crash survive it
      const logs = await pyro(["workspace", "logs", id, "--json"], { home });
      expect((logs.json.network_refusals as unknown[]).length).toBeGreaterThan(0);

      // start again (same slot when free), then kill the VMM: the supervisor ends and removes both
      const s = await pyro(["workspace", "start", id, "--json"], { home });
      expect(s.code).toBe(0);
      expect(tapExists(id)).toBe(true);
      expect(tableExists(id)).toBe(true);
      const again = record(id);
      expect(again.net.slot).toBe(before.net.slot);
      process.kill(again.vmm_pid, "SIGKILL");
      expect(await waitFor(() => record(id).state === "stopped", 30000)).toBe(true);
      expect(await waitFor(() => !tapExists(id) && !tableExists(id), 10000)).toBe(true);
      expect(record(id).stop_reason).toMatch(/machine exited|lost the agent connection/);
    },
    240_000,
  );
  net.test(
    "real guest: --allow-host follows the guest's own lookups (a local DNS server rotates the name's address)",
    async () => {
      const [a, b] = servers as [ReturnType<typeof Bun.serve>, ReturnType<typeof Bun.serve>];
      // A DNS server on this host's loopback: svc.pyro.test → `allowed` until told to rotate, then `other`.
      let answer = allowed;
      const dns = await Bun.udpSocket({
        hostname: "127.0.0.1",
        port: 0,
        socket: {
          data(sock, q, port, addr) {
            let end = 12;
            while (end < q.length && q[end] !== 0) end += (q[end] as number) + 1;
            const question = q.subarray(12, end + 5);
            const name = new TextDecoder()
              .decode(q.subarray(13, end))
              .replace(/[\x00-\x1f]/g, ".")
              .toLowerCase();
            const isA = q[end + 2] === 1;
            const found = name === "svc.pyro.test" && isA;
            const header = Buffer.from([
              q[0] as number,
              q[1] as number,
              0x81,
              name === "svc.pyro.test" ? 0x80 : 0x83,
              0,
              1,
              0,
              found ? 1 : 0,
              0,
              0,
              0,
              0,
            ]);
            const rr = found
              ? Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, ...answer.split(".").map(Number)])
              : Buffer.alloc(0);
            sock.send(Buffer.concat([header, question, rr]), port, addr);
          },
        },
      });
      const env = { PYRO_DNS_UPSTREAM: `127.0.0.1:${dns.port}` };
      try {
        const c = await pyro(
          ["workspace", "create", "debian:12", "--json", "--allow-host", "svc.pyro.test"],
          {
            home,
            env,
          },
        );
        expect(c.code).toBe(0);
        const id = c.json.workspace_id as string;
        ids.push(id);
        expect(c.json.allow_hosts).toEqual(["svc.pyro.test"]);
        const exec = (line: string) =>
          pyro(["workspace", "exec", id, "--json", "--timeout-seconds", "20", "--", "bash", "-c", line], {
            home,
          });
        // resolved at create and boot: `allowed` is reachable, `other` not (yet)
        expect(probeReached(await exec(probeLine(allowed, a.port as number)), `hello-from-${allowed}`)).toBe(
          true,
        );
        expect(probeReached(await exec(probeLine(other, b.port as number)), `hello-from-${other}`)).toBe(
          false,
        );
        // the name moves; the guest's lookup (through the supervisor's forwarder) teaches the allow-list
        answer = other;
        const look = await exec("getent hosts svc.pyro.test");
        expect(look.json.stdout).toContain(other);
        expect(probeReached(await exec(probeLine(other, b.port as number)), `hello-from-${other}`)).toBe(
          true,
        );
        await pyro(["workspace", "delete", id], { home });
        expect(tapExists(id)).toBe(false);
        expect(tableExists(id)).toBe(false);
      } finally {
        dns.close();
      }
    },
    240_000,
  );
});
