/**
 * Workspace TTL (issue 15, part 3), host compat (the rules are the manager's, not a VMM's):
 * - ttl_seconds has a documented maximum (30 days) and a TTL beyond setTimeout's 32-bit
 *   delay (~24.8 days) does not fire at once (it did: the workspace was deleted on creation);
 * - the TTL counts while a workspace is stopped: the next command that looks at records
 *   (list, status, start...) deletes an expired stopped workspace without booting it (before:
 *   stopped workspaces never expired, and their next start deleted them right after booting);
 * - a stopped workspace with time left starts and keeps running.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ERROR_EXIT_CODES } from "../src/protocol/errors.ts";
import { ensureBuilt, freshHome, processesMatching, pyro } from "./helpers.ts";

const HC = { PYRO_BACKEND: "host" };
const THIRTY_DAYS = 30 * 86400;

beforeAll(async () => {
  await ensureBuilt();
}, 300_000);

async function create(home: string, ttl: number) {
  const r = await pyro(
    ["workspace", "create", "debian:12", "--allow-host-compat", "--ttl-seconds", String(ttl), "--json"],
    {
      home,
      env: HC,
    },
  );
  return r;
}

describe("workspace ttl (host compat)", () => {
  test("ttl_seconds above 30 days is INVALID_INPUT and creates nothing", async () => {
    const home = freshHome();
    const r = await create(home, THIRTY_DAYS + 1);
    expect(r.json.code).toBe("INVALID_INPUT");
    expect(r.code).toBe(ERROR_EXIT_CODES.INVALID_INPUT);
    expect((await pyro(["workspace", "list", "--json"], { home, env: HC })).json.workspaces).toEqual([]);
    const run = await pyro(
      [
        "run",
        "debian:12",
        "--allow-host-compat",
        "--ttl-seconds",
        String(THIRTY_DAYS + 1),
        "--json",
        "--",
        "true",
      ],
      { home, env: HC },
    );
    expect(run.json.code).toBe("INVALID_INPUT");
  });

  test("a 30-day ttl (beyond setTimeout's 24.8 days) keeps the workspace running", async () => {
    const home = freshHome();
    const r = await create(home, THIRTY_DAYS);
    expect(r.code).toBe(0);
    const id = r.json.workspace_id as string;
    const expires = Date.parse(r.json.expires_at);
    expect(Math.abs(expires - (Date.now() + THIRTY_DAYS * 1000))).toBeLessThan(120_000);
    // an overflowing timer fires within a millisecond; give the supervisor ample time to misfire
    await Bun.sleep(1500);
    const st = await pyro(["workspace", "status", id, "--json"], { home, env: HC });
    expect(st.code).toBe(0);
    expect(st.json.state).toBe("started");
    const log = readFileSync(join(home, "workspaces", id, "logs", "supervisor.log"), "utf8");
    expect(log).not.toContain("ttl expired");
    await pyro(["workspace", "delete", id], { home, env: HC });
    expect(processesMatching(id)).toEqual([]);
  }, 60_000);

  test("the ttl counts while stopped: an expired stopped workspace is deleted by list and by start, without a boot", async () => {
    const home = freshHome();
    const stopped = async (ttl: number) => {
      const id = (await create(home, ttl)).json.workspace_id as string;
      expect((await pyro(["workspace", "stop", id, "--json"], { home, env: HC })).json.state).toBe("stopped");
      return id;
    };
    // 20 s: three creates + stops must fit before a and b expire, even on a loaded machine
    // (with 5 s, creates of 1.7-8.8 s under load ~20 let them expire before the probe)
    const a = await stopped(20);
    const b = await stopped(20);
    const keep = await stopped(600);
    // the probe: before expiry list shows them, stopped
    const before = await pyro(["workspace", "list", "--json"], { home, env: HC });
    const listed = before.json.workspaces as { workspace_id: string; state: string; expires_at: string }[];
    expect(listed.map((w) => [w.workspace_id, w.state]).sort()).toEqual(
      [a, b, keep].sort().map((id) => [id, "stopped"]),
    );
    const ab = listed.filter((w) => w.workspace_id !== keep).map((w) => Date.parse(w.expires_at));
    await Bun.sleep(Math.max(...ab) - Date.now() + 300);

    // start of an expired workspace: not found (its ttl ran out), and it never booted
    const logB = join(home, "workspaces", b, "logs", "supervisor.log");
    const bootsBefore = readFileSync(logB, "utf8").split("machine up").length;
    expect(bootsBefore).toBe(2); // the probe: one boot is logged
    const start = await pyro(["workspace", "start", b, "--json"], { home, env: HC });
    expect(start.json.code).toBe("WORKSPACE_NOT_FOUND");
    expect(start.json.message).toContain("ttl ran out");
    expect(existsSync(join(home, "workspaces", b))).toBe(false);
    expect(processesMatching(b)).toEqual([]);

    // list: a is gone too, keep stays
    const after = await pyro(["workspace", "list", "--json"], { home, env: HC });
    expect(after.json.workspaces.map((w: { workspace_id: string }) => w.workspace_id)).toEqual([keep]);
    expect(existsSync(join(home, "workspaces", a))).toBe(false);
    expect(processesMatching(a)).toEqual([]);
    await pyro(["workspace", "delete", keep], { home, env: HC });
  }, 150_000);

  test("a stopped workspace with time left starts and is not deleted after its start", async () => {
    const home = freshHome();
    const id = (await create(home, 20)).json.workspace_id as string;
    await pyro(["workspace", "stop", id, "--json"], { home, env: HC });
    const start = await pyro(["workspace", "start", id, "--json"], { home, env: HC });
    expect(start.code).toBe(0);
    expect(start.json.state).toBe("started");
    await Bun.sleep(1000);
    const exec = await pyro(["workspace", "exec", id, "--json", "--", "echo", "alive"], { home, env: HC });
    expect(exec.json.stdout).toBe("alive\n");
    expect((await pyro(["workspace", "status", id, "--json"], { home, env: HC })).json.state).toBe("started");
    await pyro(["workspace", "delete", id], { home, env: HC });
  }, 60_000);
});
