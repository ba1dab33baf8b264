/**
 * The attach step on a real guest (QEMU; TCG here): every boot comes up detached from its
 * workspace disk (rootfs/init/pyro-init only mounts /proc, /sys, /dev and starts the agent)
 * and the host's sys.attach (guest/attach.ts) does the rest. One workspace, checked after
 * create and again after stop/start:
 * - /workspace is on the data disk (the overlay's upper layer on /run/pyro/data): a file
 *   written before the stop is there after the start;
 * - `mount` shows the overlay root, /run/pyro/data (ext4, vdb), /dev/pts, /dev/shm, /tmp;
 * - /proc/sys/kernel/random/boot_id in the guest is the record's boot_id, and both change
 *   across stop/start (the host makes a fresh one per boot);
 * - hostname and its /etc/hosts line as the old init made them; lo is up;
 * - the guest clock is within a few seconds of the host's;
 * - the same holds whichever way the machine came up: the environment's VM template
 *   (restored, then attached) or a cold boot (PYRO_TEMPLATES=off);
 * - the supervisor log and the guest console carry the attach time; no attach step failed.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { pyro } from "./helpers.ts";

let home = "";
let ws = "";

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  const c = await pyro(
    ["workspace", "create", "debian:12", "--name", "attach-guest", "--mem-mib", "512", "--json"],
    {
      home,
    },
  );
  expect(c.code).toBe(0);
  expect(c.json.execution_mode).toBe("guest");
  ws = c.json.workspace_id;
}, 1_800_000);

afterAll(async () => {
  if (ws) await pyro(["workspace", "delete", ws], { home });
});

async function sh(script: string): Promise<string> {
  const r = await pyro(["workspace", "exec", ws, "--json", "--", "sh", "-c", script], { home });
  if (r.json?.exit_code !== 0)
    throw new Error(`exec failed: ${JSON.stringify(r.json ?? r.stderr).slice(0, 800)}`);
  return String(r.json.stdout);
}

const record = () => JSON.parse(readFileSync(join(home, "workspaces", ws, "workspace.json"), "utf8"));
const recordBootId = (): string => record().boot_id;

/** What a freshly attached guest must look like; returns its boot id. */
async function checkAttached(): Promise<string> {
  const hostBefore = Date.now();
  const out = (
    await sh(
      [
        "cat /proc/sys/kernel/random/boot_id",
        "date +%s%3N",
        "hostname",
        "cat /sys/class/net/lo/flags",
        "echo ---mounts",
        "cat /proc/mounts",
        "echo ---hosts",
        "cat /etc/hosts",
      ].join("; "),
    )
  ).split("\n");
  const hostAfter = Date.now();
  const [bootId, clock, hostname, loFlags] = out as [string, string, string, string];
  // the boot id the host made: a UUID, the record's, what /proc says
  expect(bootId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  expect(recordBootId()).toBe(bootId);
  // the clock was set from the host's (a few seconds of slack: exec under TCG is slow)
  expect(Number(clock)).toBeGreaterThan(hostBefore - 5000);
  expect(Number(clock)).toBeLessThan(hostAfter + 5000);
  expect(hostname).toBe("pyro");
  expect(Number.parseInt(loFlags, 16) & 1).toBe(1);
  const mounts = out.slice(out.indexOf("---mounts") + 1, out.indexOf("---hosts")).map((l) => l.split(" "));
  const at = (dir: string) => mounts.find((m) => m[1] === dir);
  expect(at("/")?.[2]).toBe("overlay");
  expect(at("/")?.[3]).toContain("upperdir=/mnt/data/upper");
  expect(at("/run/pyro/data")?.slice(0, 3)).toEqual(["/dev/vdb", "/run/pyro/data", "ext4"]);
  for (const [dir, type] of [
    ["/run", "tmpfs"],
    ["/dev/pts", "devpts"],
    ["/dev/shm", "tmpfs"],
    ["/tmp", "tmpfs"],
    ["/proc", "proc"],
    ["/sys", "sysfs"],
  ])
    expect(at(dir as string)?.[2], dir).toBe(type as string);
  // the old root is gone, and nothing was left at the pre-pivot mount points
  expect(mounts.some((m) => m[1]?.startsWith("/run/pyro/oldroot"))).toBe(false);
  expect(at("/mnt/data")).toBeUndefined();
  const hosts = out.slice(out.indexOf("---hosts") + 1);
  expect(hosts.filter((l) => l === "127.0.1.1\tpyro")).toHaveLength(1);
  return bootId;
}

guest.describe("real guest: attach", () => {
  let firstBoot = "";
  let secondBoot = "";

  guest.test(
    "real guest: after create the guest is attached: overlay root on the data disk, host's boot id and clock, hostname, lo",
    async () => {
      firstBoot = await checkAttached();
      // /workspace is the overlay's: its files land in the upper layer on the data disk
      await sh("echo kept > /workspace/attach-probe.txt; sync");
      expect(await sh("cat /run/pyro/data/upper/workspace/attach-probe.txt")).toBe("kept\n");
      const log = readFileSync(join(home, "workspaces", ws, "logs", "supervisor.log"), "utf8");
      expect(log).toMatch(/machine up .* attach=\d+ms \(guest \d+ms\)/);
      // the agent logs the attach on the console; no step of it failed (each prints "pyro-init: ...")
      const console = readFileSync(join(home, "workspaces", ws, "logs", "console.log"), "utf8");
      expect(console).toContain(`pyro-agent: attached in `);
      expect(console).toContain(`(boot id ${firstBoot};`);
      expect(console).not.toContain("pyro-init:");
    },
    600_000,
  );

  guest.test(
    "real guest: stop/start attaches again: the file is still there, a fresh boot id, one /etc/hosts line",
    async () => {
      expect(firstBoot).not.toBe("");
      expect((await pyro(["workspace", "stop", ws, "--json"], { home })).code).toBe(0);
      expect((await pyro(["workspace", "start", ws, "--json"], { home })).code).toBe(0);
      const second = await checkAttached();
      expect(second).not.toBe(firstBoot);
      expect(await sh("cat /workspace/attach-probe.txt")).toBe("kept\n");
      secondBoot = second;
    },
    600_000,
  );

  guest.test(
    "real guest: a cold boot (templates off) attaches through the same path",
    async () => {
      expect(secondBoot).not.toBe("");
      const env = { PYRO_TEMPLATES: "off" };
      expect((await pyro(["workspace", "stop", ws, "--json"], { home, env })).code).toBe(0);
      expect((await pyro(["workspace", "start", ws, "--json"], { home, env })).code).toBe(0);
      expect(record().boot).toBe("cold");
      const third = await checkAttached();
      expect([firstBoot, secondBoot]).not.toContain(third);
      expect(await sh("cat /workspace/attach-probe.txt")).toBe("kept\n");
    },
    600_000,
  );
});
