/**
 * VM templates on a real guest (QEMU; TCG here), src/manager/templates.ts:
 * - the first create makes the environment's template (RAM file + small device state) and
 *   restores it; a second workspace restores the same template;
 * - the two clones are separate machines: different boot ids and random streams, a correct
 *   clock, a file written in one is in neither the other nor the template's RAM file (hashed
 *   before and after);
 * - PYRO_TEMPLATES=off boots cold and says why; reset restores the template; a paused clone
 *   resumes from its own memory;
 * - a template whose key changed (another agent) is stale: never used, remade, the old one gone;
 * - faults: a make killed after the save publishes nothing (the next create makes a whole one);
 *   a truncated state file fails its hash and is never used.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readRecord } from "../src/manager/record.ts";
import { guest, guestHome } from "./guest-env.ts";
import { processesMatching, pyro } from "./helpers.ts";

let home = "";
const made: string[] = [];
const MEM = "512";

const templatesDir = () => join(home, "templates");
/** Published template directories (not temp, lock or failure files). */
const published = () =>
  existsSync(templatesDir()) ? readdirSync(templatesDir()).filter((n) => /^[0-9a-f]{64}$/.test(n)) : [];
const metaOf = (key: string) => JSON.parse(readFileSync(join(templatesDir(), key, "meta.json"), "utf8"));

async function sha256(path: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) h.update(chunk);
  return h.digest("hex");
}

async function create(name: string, env: Record<string, string> = {}) {
  const r = await pyro(["workspace", "create", "debian:12", "--name", name, "--mem-mib", MEM, "--json"], {
    home,
    env,
  });
  if (r.code !== 0) throw new Error(`create ${name} failed: ${r.stdout}${r.stderr}`);
  expect(r.json.execution_mode).toBe("guest");
  made.push(r.json.workspace_id);
  return r;
}

async function sh(ws: string, script: string): Promise<string> {
  const r = await pyro(["workspace", "exec", ws, "--json", "--", "sh", "-c", script], { home });
  if (r.json?.exit_code !== 0) throw new Error(`exec failed: ${r.stdout}${r.stderr}`);
  return String(r.json.stdout);
}

async function status(ws: string) {
  const r = await pyro(["workspace", "status", ws, "--json"], { home });
  expect(r.code).toBe(0);
  return r.json;
}

async function remove(ws: string) {
  await pyro(["workspace", "delete", ws], { home });
  const i = made.indexOf(ws);
  if (i >= 0) made.splice(i, 1);
}

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
}, 1_800_000);

afterAll(async () => {
  for (const ws of [...made]) await remove(ws);
});

guest.describe("real guest: VM templates", () => {
  let a = "";
  let b = "";
  let key = "";

  guest.test(
    "real guest: the first create makes the template and restores it; a second workspace restores the same one",
    async () => {
      expect(published()).toEqual([]);
      const ca = await create("tpl-a");
      expect(ca.stderr).toContain("making a VM template for debian:12 (once)");
      expect(ca.json.boot).toBe("template");
      expect(ca.json.boot_note).toBeNull();
      a = ca.json.workspace_id;
      expect(published().length).toBe(1);
      key = published()[0] as string;
      const meta = metaOf(key);
      // RAM is a file of the machine's size; the device state is small (no RAM in it)
      expect(statSync(join(templatesDir(), key, "ram")).size).toBe(Number(MEM) * 1024 * 1024);
      expect(meta.state.bytes).toBeLessThan(8 * 1024 * 1024);
      expect(meta.parts.mem_mib).toBe(Number(MEM));

      const cb = await create("tpl-b");
      expect(cb.stderr).not.toContain("making a VM template");
      expect(cb.json.boot).toBe("template");
      b = cb.json.workspace_id;
      expect(published()).toEqual([key]);
      // status shows it too
      expect((await status(b)).boot).toBe("template");
      // its QEMU runs without transparent huge pages (src/vmm/process.ts spawnThp); the probe
      // reads the field: this test process has them enabled
      const thp = (pid: number | string) =>
        /^THP_enabled:\s*(\d)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
      expect(thp("self")).toBe("1");
      const vmm = readRecord(home, b)?.vmm_pid;
      expect(vmm).toBeGreaterThan(0);
      expect(thp(vmm as number)).toBe("0");
    },
    600_000,
  );

  guest.test(
    "real guest: two clones differ in boot id and random stream, keep the host's clock, and never share writes",
    async () => {
      const ram = join(templatesDir(), key, "ram");
      const before = await sha256(ram);
      expect(before).toBe(metaOf(key).ram.sha256);
      const probe = "cat /proc/sys/kernel/random/boot_id; cat /proc/sys/kernel/random/uuid; date +%s";
      const [pa, pb] = [(await sh(a, probe)).split("\n"), (await sh(b, probe)).split("\n")];
      const hostNow = Date.now() / 1000;
      expect(pa[0]).toMatch(/^[0-9a-f-]{36}$/);
      expect(pa[0]).not.toBe(pb[0]);
      expect(pa[1]).not.toBe(pb[1]);
      for (const p of [pa, pb]) expect(Math.abs(Number(p[2]) - hostNow)).toBeLessThan(30);
      // the record's boot id is the guest's
      expect((await status(a)).workspace_id).toBe(a);

      // a file written in one clone: there (the probe works), not in the other
      await sh(
        a,
        "echo only-in-a > /workspace/mark.txt; dd if=/dev/urandom of=/tmp/big bs=1M count=32 2>/dev/null; sync",
      );
      expect(await sh(a, "cat /workspace/mark.txt")).toBe("only-in-a\n");
      expect(await sh(b, "test -e /workspace/mark.txt && echo present || echo absent")).toBe("absent\n");
      // and the template's RAM file is unchanged (clones map it private)
      expect(await sha256(ram)).toBe(before);
    },
    600_000,
  );

  guest.test(
    "real guest: PYRO_TEMPLATES=off boots cold and says why",
    async () => {
      const c = await create("tpl-cold", { PYRO_TEMPLATES: "off" });
      expect(c.json.boot).toBe("cold");
      expect(c.json.boot_note).toContain("PYRO_TEMPLATES=off");
      expect(c.stderr).not.toContain("making a VM template");
      await remove(c.json.workspace_id);
    },
    600_000,
  );

  guest.test(
    "real guest: reset restores the template; a paused clone resumes from its own memory",
    async () => {
      await sh(b, "echo keep > /workspace/kept.txt; echo 41 > /tmp/in-memory");
      const p = await pyro(["workspace", "pause", b, "--json"], { home });
      expect(p.code).toBe(0);
      expect(p.json.state).toBe("paused");
      const r = await pyro(["workspace", "resume", b, "--json"], { home });
      expect(r.code).toBe(0);
      expect(r.json.resumed_from).toBe("memory");
      // /tmp is a tmpfs: only a memory restore keeps it
      expect(await sh(b, "cat /tmp/in-memory /workspace/kept.txt")).toBe("41\nkeep\n");
      expect((await status(b)).boot).toBe("memory");

      const reset = await pyro(["workspace", "reset", b, "--json"], { home });
      expect(reset.code).toBe(0);
      expect(reset.json.boot).toBe("template");
      expect(await sh(b, "test -e /workspace/kept.txt && echo present || echo absent")).toBe("absent\n");
      expect(await sh(b, "echo works")).toBe("works\n");
    },
    600_000,
  );

  guest.test(
    "real guest: a template whose key changed (another agent) is stale, never used, and remade",
    async () => {
      const envRoot = join(home, "environments", "debian-12");
      const version = readdirSync(envRoot).find((n) => !n.startsWith(".")) as string;
      const manifestPath = join(envRoot, version, "manifest.json");
      const original = readFileSync(manifestPath, "utf8");
      try {
        const m = JSON.parse(original);
        m.agent_sha256 = "0".repeat(64);
        writeFileSync(manifestPath, JSON.stringify(m, null, 2));
        const doc = await pyro(["doctor", "--environment", "debian:12", "--json"], { home });
        const check = doc.json.checks.find((c: any) => c.name === "template debian:12");
        // doctor looks at the default shape (1024 MiB): missing there; the 512 MiB one is checked below
        expect(check).toBeDefined();
        const c = await create("tpl-new");
        expect(c.stderr).toContain("making a VM template for debian:12 (once)");
        expect(c.json.boot).toBe("template");
        const keys = published();
        expect(keys.length).toBe(1);
        expect(keys[0]).not.toBe(key);
        expect(metaOf(keys[0] as string).parts.agent_sha256).toBe("0".repeat(64));
        await remove(c.json.workspace_id);
      } finally {
        writeFileSync(manifestPath, original);
      }
      // back to the original key: the other template was dropped, so this one is made again
      const again = await create("tpl-back");
      expect(again.stderr).toContain("making a VM template");
      key = published()[0] as string;
      expect(metaOf(key).parts.agent_sha256).not.toBe("0".repeat(64));
      await remove(again.json.workspace_id);
    },
    900_000,
  );

  guest.test(
    "real guest: a make killed after the save publishes nothing; a truncated state is never used",
    async () => {
      // drop the current template so the next create makes one
      const { rmSync } = await import("node:fs");
      rmSync(join(templatesDir(), key), { recursive: true, force: true });
      const mark = join(home, "fault-mark");
      const killed = await pyro(
        ["workspace", "create", "debian:12", "--name", "tpl-fault", "--mem-mib", MEM, "--json"],
        { home, env: { PYRO_FAULT: "template.written", PYRO_FAULT_MARK: mark } },
      );
      expect(killed.code).not.toBe(0);
      expect(readFileSync(mark, "utf8")).toContain("template.written cli");
      expect(published()).toEqual([]); // written, but never renamed into place
      expect(readdirSync(templatesDir()).some((n) => n.startsWith(".tmp-"))).toBe(true);
      // no QEMU of the killed make is left
      expect(processesMatching("pyro-template-")).toEqual([]);

      const c = await create("tpl-after-fault");
      expect(c.json.boot).toBe("template");
      expect(readdirSync(templatesDir()).some((n) => n.startsWith(".tmp-"))).toBe(false); // swept
      key = published()[0] as string;
      await remove(c.json.workspace_id);

      // a truncated state file: its hash fails, so it is never restored (it is remade)
      const statePath = join(templatesDir(), key, "state");
      const whole = metaOf(key).state;
      truncateSync(statePath, Math.floor(whole.bytes / 2));
      const doc = await pyro(["doctor", "--json"], { home });
      expect(doc.code).toBeDefined();
      const d = await create("tpl-truncated");
      expect(d.json.boot).toBe("template");
      expect(d.stderr).toContain("making a VM template");
      const now = published()[0] as string;
      expect(statSync(join(templatesDir(), now, "state")).size).toBe(metaOf(now).state.bytes);
      expect(await sha256(join(templatesDir(), now, "state"))).toBe(metaOf(now).state.sha256);
      expect(await sh(d.json.workspace_id, "echo alive")).toBe("alive\n");
      await remove(d.json.workspace_id);
    },
    900_000,
  );

  guest.test(
    "real guest: deleting the clones leaves no QEMU or supervisor behind",
    async () => {
      expect(a && b).toBeTruthy();
      for (const ws of [a, b]) await remove(ws);
      for (const ws of [a, b]) expect(processesMatching(ws)).toEqual([]);
    },
    120_000,
  );
});
