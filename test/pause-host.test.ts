/**
 * Pause/resume refusals that need no VM (host compat): pause is BACKEND_UNAVAILABLE before
 * anything changes (the workspace keeps running and exec still works), resume of a workspace
 * that is not paused is WORKSPACE_NOT_STARTED for a stopped one and a no-op for a running one.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, freshHome, processesMatching, pyro } from "./helpers.ts";

const home = freshHome();
const HC = { PYRO_BACKEND: "host" };
let id = "";

beforeAll(async () => {
  await ensureBuilt();
  const r = await pyro(["workspace", "create", "debian:12", "--id-only"], { home, env: HC });
  expect(r.code).toBe(0);
  id = r.stdout.trim();
}, 120_000);

afterAll(async () => {
  if (!id) return;
  await pyro(["workspace", "delete", id], { home, env: HC });
  expect(processesMatching(id)).toEqual([]);
});

describe("pause/resume without a VM", () => {
  test("pause of a host-compat workspace is BACKEND_UNAVAILABLE and changes nothing", async () => {
    const p = await pyro(["workspace", "pause", id, "--json"], { home, env: HC });
    expect(p.code).toBe(69);
    expect(p.json.code).toBe("BACKEND_UNAVAILABLE");
    expect(existsSync(join(home, "workspaces", id, "paused.tmp"))).toBe(false);
    const s = await pyro(["workspace", "status", id, "--json"], { home, env: HC });
    expect(s.json.state).toBe("started");
    const e = await pyro(["workspace", "exec", id, "--json", "--", "echo", "still-here"], { home, env: HC });
    expect(e.json.stdout).toBe("still-here\n");
  }, 60_000);

  test("resume of a running workspace does nothing; of a stopped one is WORKSPACE_NOT_STARTED", async () => {
    const r = await pyro(["workspace", "resume", id, "--json"], { home, env: HC });
    expect(r.code).toBe(0);
    expect(r.json.resumed_from).toBe("already_running");
    expect((await pyro(["workspace", "stop", id], { home, env: HC })).code).toBe(0);
    const s = await pyro(["workspace", "resume", id, "--json"], { home, env: HC });
    expect(s.json.code).toBe("WORKSPACE_NOT_STARTED");
    expect(s.json.hint).toContain("start");
    const p = await pyro(["workspace", "pause", id, "--json"], { home, env: HC });
    expect(p.json.code).toBe("WORKSPACE_NOT_STARTED");
  }, 60_000);
});
