/**
 * One corrupt workspace record never affects another workspace: each corrupt form sits
 * beside a healthy workspace that keeps listing, exec'ing, creating and deleting; the
 * corrupt one lists as "corrupt" with a reason, is WORKSPACE_CORRUPT for status, shows in
 * doctor, and `delete` stops its still-running machine and removes it. Host-compat
 * workspaces (compiled dist/pyro) so it runs anywhere, plus one real-guest variant.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { ensureBuilt, freshHome, processesMatching, pyro, waitFor } from "./helpers.ts";

const HC = "--allow-host-compat";

beforeAll(async () => {
  await ensureBuilt();
});

const recordFile = (home: string, id: string) => join(home, "workspaces", id, "workspace.json");

/** The three ways a record is found damaged. */
const FORMS: Record<string, (text: string) => string | Uint8Array> = {
  "truncated JSON": (text) => text.slice(0, Math.floor(text.length / 2)),
  "garbage bytes": () => Uint8Array.from({ length: 512 }, (_, i) => (i * 151 + 7) % 256),
  "valid JSON with wrong types": (text) => JSON.stringify({ ...JSON.parse(text), state: 5, labels: "x" }),
};

function corrupt(home: string, id: string, form: string): void {
  const p = recordFile(home, id);
  writeFileSync(p, (FORMS[form] as (t: string) => string | Uint8Array)(readFileSync(p, "utf8")));
}

async function create(home: string, name: string, extra: string[] = [HC]): Promise<string> {
  const r = await pyro(["workspace", "create", ...extra, "--name", name, "--json"], { home });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r.json.workspace_id as string;
}

/** The list entries by id. */
async function listed(home: string): Promise<Map<string, any>> {
  const r = await pyro(["workspace", "list", "--json"], { home });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return new Map((r.json.workspaces as any[]).map((w) => [w.workspace_id, w]));
}

/** The supervisor and the agent/VMM of a workspace: both name its id on their command lines. */
const liveProcesses = (id: string) =>
  processesMatching(id).filter(
    (p) => p.includes("__supervise") || p.includes("pyro-agent") || p.includes("qemu"),
  );

describe("corrupt records (host compat)", () => {
  for (const form of Object.keys(FORMS)) {
    test(`${form}: the healthy neighbour keeps working; the corrupt one lists, is WORKSPACE_CORRUPT, shows in doctor and deletes with its processes`, async () => {
      const home = freshHome();
      const good = await create(home, "good");
      const bad = await create(home, "victim");
      // the probe for "its processes are gone" sees them while they run
      expect(liveProcesses(bad).some((p) => p.includes("__supervise"))).toBe(true);
      expect(liveProcesses(bad).some((p) => p.includes("pyro-agent"))).toBe(true);

      // before: status works, doctor has nothing to report
      expect((await pyro(["workspace", "status", bad, "--json"], { home })).json.state).toBe("started");
      const clean = await pyro(["doctor", "--json"], { home });
      const cleanCheck = clean.json.checks.find((c: any) => c.name === "workspace_records");
      expect(cleanCheck.warning ?? false).toBe(false);
      expect(cleanCheck.detail).not.toContain(bad);

      corrupt(home, bad, form);

      // list: the healthy one as before, the corrupt one as such, no host path in the reason
      const all = await listed(home);
      expect(all.get(good)?.state).toBe("started");
      const entry = all.get(bad);
      expect(entry.state).toBe("corrupt");
      expect(entry.running).toBe(true);
      expect(typeof entry.corrupt_reason).toBe("string");
      expect(entry.corrupt_reason.length).toBeGreaterThan(0);
      expect(entry.corrupt_reason).not.toContain(home);
      expect(entry.corrupt_reason).not.toContain("/");
      const human = await pyro(["workspace", "list"], { home });
      expect(human.code).toBe(0);
      expect(human.stdout).toContain(`${bad}: ${entry.corrupt_reason}`);

      // the corrupt one: a clear code with a hint, for status and exec alike
      const st = await pyro(["workspace", "status", bad, "--json"], { home });
      expect(st.code).toBe(65);
      expect(st.json.code).toBe("WORKSPACE_CORRUPT");
      expect(st.json.hint).toContain(`pyro workspace delete ${bad}`);
      expect(st.stdout).not.toContain(home);
      const ex = await pyro(["workspace", "exec", bad, "--json", "--", "true"], { home });
      expect(ex.json.code).toBe("WORKSPACE_CORRUPT");
      if (form === "valid JSON with wrong types") {
        // its name is still readable: it resolves (to the same error) and stays claimed
        expect((await pyro(["workspace", "status", "victim", "--json"], { home })).json.code).toBe(
          "WORKSPACE_CORRUPT",
        );
        const dup = await pyro(["workspace", "create", HC, "--name", "victim", "--json"], { home });
        expect(dup.json.code).toBe("NAME_CONFLICT");
      }

      // the healthy neighbour: exec by name, and a new workspace created beside both
      const out = await pyro(["workspace", "exec", "good", "--json", "--", "sh", "-c", "echo alive"], {
        home,
      });
      expect(out.code).toBe(0);
      expect(out.json.stdout).toBe("alive\n");
      const next = await create(home, "next");
      expect((await listed(home)).get(next)?.state).toBe("started");

      // doctor names it as a warning
      const doc = await pyro(["doctor", "--json"], { home });
      const check = doc.json.checks.find((c: any) => c.name === "workspace_records");
      expect(check.ok).toBe(true);
      expect(check.warning).toBe(true);
      expect(check.detail).toContain(bad);
      expect(check.hint).toContain(`pyro workspace delete ${bad}`);

      // delete: its supervisor and agent are stopped, its directory is gone
      const del = await pyro(["workspace", "delete", bad, "--json"], { home });
      expect(del.code, del.stdout + del.stderr).toBe(0);
      expect(del.json).toEqual({ workspace_id: bad, deleted: true });
      expect(await waitFor(() => liveProcesses(bad).length === 0)).toBe(true);
      expect(existsSync(join(home, "workspaces", bad))).toBe(false);
      const after = await listed(home);
      expect(after.has(bad)).toBe(false);
      expect([...after.keys()].sort()).toEqual([good, next].sort());
      const doc2 = await pyro(["doctor", "--json"], { home });
      expect(doc2.json.checks.find((c: any) => c.name === "workspace_records").warning ?? false).toBe(false);

      // the healthy ones delete as usual, leaving nothing behind
      for (const id of [good, next]) {
        expect((await pyro(["workspace", "delete", id, "--json"], { home })).code).toBe(0);
        expect(await waitFor(() => liveProcesses(id).length === 0)).toBe(true);
      }
      expect((await listed(home)).size).toBe(0);
    }, 120_000);
  }

  test("a corrupt record holds an active-VM slot only while its machine runs", async () => {
    const home = freshHome();
    const env = { PYRO_MAX_ACTIVE_VMS: "2" };
    const run = (args: string[]) => pyro(args, { home, env });
    const a = (await run(["workspace", "create", HC, "--json"])).json.workspace_id as string;
    // a stopped workspace whose record is then damaged: nothing runs, so it takes no slot
    const stopped = (await run(["workspace", "create", HC, "--json"])).json.workspace_id as string;
    expect((await run(["workspace", "stop", stopped, "--json"])).json.state).toBe("stopped");
    corrupt(home, stopped, "garbage bytes");
    expect((await listed(home)).get(stopped)?.running).toBe(false);
    const c = await run(["workspace", "create", HC, "--json"]);
    expect(c.code, c.stdout).toBe(0);
    // the limit is really reached with two running
    expect((await run(["workspace", "create", HC, "--json"])).json.code).toBe("WORKSPACE_LIMIT_REACHED");
    // a running workspace whose record is damaged still holds its slot
    corrupt(home, c.json.workspace_id, "truncated JSON");
    expect((await run(["workspace", "create", HC, "--json"])).json.code).toBe("WORKSPACE_LIMIT_REACHED");
    // deleting it frees the slot
    expect((await run(["workspace", "delete", c.json.workspace_id, "--json"])).code).toBe(0);
    const d = await run(["workspace", "create", HC, "--json"]);
    expect(d.code, d.stdout).toBe(0);
    for (const id of [a, stopped, d.json.workspace_id]) {
      expect((await run(["workspace", "delete", id, "--json"])).code).toBe(0);
    }
    expect((await listed(home)).size).toBe(0);
    expect(liveProcesses(home)).toEqual([]);
  }, 120_000);
});

guest.describe("real guest: corrupt records", () => {
  test("real guest: a corrupt record of a running VM is listed and deleted, its QEMU gone", async () => {
    const home = await guestHome();
    const id = await create(home, "guest-victim", []);
    const qemu = () => processesMatching(id).filter((p) => p.includes("qemu"));
    expect(qemu().length).toBe(1);
    corrupt(home, id, "garbage bytes");
    const entry = (await listed(home)).get(id);
    expect(entry.state).toBe("corrupt");
    expect(entry.running).toBe(true);
    expect((await pyro(["workspace", "status", id, "--json"], { home })).json.code).toBe("WORKSPACE_CORRUPT");
    const del = await pyro(["workspace", "delete", id, "--json"], { home });
    expect(del.code, del.stdout + del.stderr).toBe(0);
    expect(await waitFor(() => qemu().length === 0 && liveProcesses(id).length === 0)).toBe(true);
    expect(existsSync(join(home, "workspaces", id))).toBe(false);
    expect((await listed(home)).has(id)).toBe(false);
  }, 300_000);
});
