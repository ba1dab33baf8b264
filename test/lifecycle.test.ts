/**
 * Start, stop, reset and delete of one workspace take turns (its lifecycle lock): concurrent
 * ones are serialised, and one that waits past PYRO_LIFECYCLE_WAIT_MS is WORKSPACE_BUSY.
 * Host compat: the lock is the same whatever the backend.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { withLock } from "../src/base/lock.ts";
import { lifecycleLock } from "../src/manager/store.ts";
import { ERROR_EXIT_CODES } from "../src/protocol/errors.ts";
import { ensureBuilt, freshHome, processesMatching, pyro } from "./helpers.ts";

const home = freshHome();
const HC = { PYRO_BACKEND: "host" };
let id = "";

const supervisors = () => processesMatching(id).filter((p) => p.includes("__supervise"));

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

describe("workspace lifecycle lock", () => {
  test("three concurrent resets all succeed, one after another, leaving one supervisor", async () => {
    const runs = await Promise.all(
      [1, 2, 3].map(() => pyro(["workspace", "reset", id, "--json"], { home, env: HC })),
    );
    expect(runs.map((r) => [r.code, r.json?.code ?? r.json?.state])).toEqual([
      [0, "started"],
      [0, "started"],
      [0, "started"],
    ]);
    expect(supervisors().length).toBe(1);
    const exec = await pyro(["workspace", "exec", id, "--json", "--", "true"], { home, env: HC });
    expect(exec.code).toBe(0);
  });

  test("a stop that waits past the bound for another lifecycle change is WORKSPACE_BUSY; after it, stop works", async () => {
    const env = { ...HC, PYRO_LIFECYCLE_WAIT_MS: "300" };
    // this process plays the other call: it holds the workspace's lifecycle lock
    const busy = await withLock(lifecycleLock(home, id), () =>
      pyro(["workspace", "stop", id, "--json"], { home, env }),
    );
    expect(busy.json.code).toBe("WORKSPACE_BUSY");
    expect(busy.json.message).toContain(id);
    expect(busy.code).toBe(ERROR_EXIT_CODES.WORKSPACE_BUSY);
    const status = await pyro(["workspace", "status", id, "--json"], { home, env });
    expect(status.json.state).toBe("started");
    // the same call once the lock is free
    const stopped = await pyro(["workspace", "stop", id, "--json"], { home, env });
    expect(stopped.code).toBe(0);
    expect(stopped.json.state).toBe("stopped");
    expect(supervisors()).toEqual([]);
  });

  test("a delete that waited for a start finds the workspace started and deletes it", async () => {
    const [start, del] = await Promise.all([
      pyro(["workspace", "start", id, "--json"], { home, env: HC }),
      Bun.sleep(50).then(() => pyro(["workspace", "delete", id, "--json"], { home, env: HC })),
    ]);
    expect(del.code).toBe(0);
    expect(del.json.deleted).toBe(true);
    // the start ran first (then delete stopped it) or found the workspace gone
    expect(start.code === 0 || start.json?.code === "WORKSPACE_NOT_FOUND").toBe(true);
    expect(processesMatching(id)).toEqual([]);
  });
});
