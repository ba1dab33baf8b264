/**
 * Creates racing each other (issue 15, part 3), ten CLI processes at once in host compat
 * (the registry lock is the manager's, whatever the backend):
 * - ten creates with one name: exactly one wins, nine are NAME_CONFLICT, one workspace exists;
 * - ten creates against a limit of three active machines: exactly three run, seven are
 *   WORKSPACE_LIMIT_REACHED and leave nothing behind.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, freshHome, processesMatching, pyro } from "./helpers.ts";

const HC = { PYRO_BACKEND: "host" };

beforeAll(async () => {
  await ensureBuilt();
}, 300_000);

async function cleanup(home: string, ids: string[]) {
  for (const id of ids) await pyro(["workspace", "delete", id], { home, env: HC });
  for (const id of ids) expect(processesMatching(id)).toEqual([]);
  expect(processesMatching(home)).toEqual([]);
  expect(readdirSync(join(home, "workspaces"))).toEqual([]);
}

describe("concurrent creates (host compat, 10 processes)", () => {
  test("one name: exactly one create wins", async () => {
    const home = freshHome();
    const runs = await Promise.all(
      Array.from({ length: 10 }, () =>
        pyro(["workspace", "create", "debian:12", "--allow-host-compat", "--name", "race", "--json"], {
          home,
          env: HC,
        }),
      ),
    );
    const won = runs.filter((r) => r.code === 0);
    expect(won.length).toBe(1);
    expect(runs.filter((r) => r.json?.code === "NAME_CONFLICT").length).toBe(9);
    const list = (await pyro(["workspace", "list", "--json"], { home, env: HC })).json.workspaces;
    expect(list.map((w: { name: string; state: string }) => [w.name, w.state])).toEqual([
      ["race", "started"],
    ]);
    expect(list[0].workspace_id).toBe(won[0]?.json.workspace_id);
    await cleanup(home, [list[0].workspace_id]);
  }, 120_000);

  test("the active-machine limit holds under 10 concurrent creates", async () => {
    const home = freshHome();
    const env = { ...HC, PYRO_MAX_ACTIVE_VMS: "3" };
    const runs = await Promise.all(
      Array.from({ length: 10 }, () =>
        pyro(["workspace", "create", "debian:12", "--allow-host-compat", "--json"], { home, env }),
      ),
    );
    const won = runs.filter((r) => r.code === 0).map((r) => r.json.workspace_id as string);
    expect(won.length).toBe(3);
    expect(runs.filter((r) => r.json?.code === "WORKSPACE_LIMIT_REACHED").length).toBe(7);
    const list = (await pyro(["workspace", "list", "--json"], { home, env })).json.workspaces;
    expect(list.map((w: { workspace_id: string }) => w.workspace_id).sort()).toEqual(won.sort());
    expect(list.every((w: { state: string }) => w.state === "started")).toBe(true);
    // exactly three supervisors run, one per winner
    const sups = won.flatMap((id) => processesMatching(id).filter((p) => p.includes("__supervise")));
    expect(sups.length).toBe(3);
    await cleanup(home, won);
  }, 120_000);
});
