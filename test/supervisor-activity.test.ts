/**
 * Activity bookkeeping across the faces: every operation whose record says `mutates: true`
 * moves the workspace up in `list` (invoke() bumps last_activity_at), patch apply included,
 * and reads do not; the supervisor alone keeps the command history and `command_count`,
 * written before the exec's answer. Host compat, so it runs fast.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ensureBuilt, freshHome, pyro } from "./helpers.ts";

const home = freshHome();
const ids: string[] = [];

beforeAll(async () => {
  await ensureBuilt();
});

afterAll(async () => {
  for (const id of ids) await pyro(["workspace", "delete", id], { home });
});

async function listed(): Promise<string[]> {
  const l = await pyro(["workspace", "list", "--json"], { home });
  expect(l.code).toBe(0);
  return l.json.workspaces.map((w: { name: string }) => w.name);
}

async function status(ref: string): Promise<Record<string, any>> {
  const s = await pyro(["workspace", "status", ref, "--json"], { home });
  expect(s.code).toBe(0);
  return s.json;
}

describe("activity bookkeeping", () => {
  test("exec and patch apply count as activity at once, reads do not; only exec is history", async () => {
    for (const name of ["older", "newer"]) {
      const c = await pyro(["workspace", "create", "--allow-host-compat", "--name", name, "--json"], {
        home,
      });
      expect(c.code).toBe(0);
      ids.push(c.json.workspace_id);
    }
    expect(await listed()).toEqual(["newer", "older"]);

    // exec moves `older` up, and is counted and in the history before the command returns
    const e = await pyro(["workspace", "exec", "older", "--json", "--", "sh", "-c", "echo hi > note.txt"], {
      home,
    });
    expect(e.code).toBe(0);
    expect(await listed()).toEqual(["older", "newer"]);
    expect((await status("older")).command_count).toBe(1);
    const logs = await pyro(["workspace", "logs", "older", "--json"], { home });
    expect(logs.json.entries.map((x: { seq: number; argv: unknown }) => [x.seq, x.argv])).toEqual([
      [1, ["sh", "-c", "echo hi > note.txt"]],
    ]);

    // patch apply is a mutation (it was missing from the supervisor's old hand-kept list)
    const patch = "--- /dev/null\n+++ b/added.txt\n@@ -0,0 +1 @@\n+added\n";
    const p = await pyro(["workspace", "patch", "apply", "newer", "--patch", patch, "--json"], { home });
    expect(p.code).toBe(0);
    expect(await listed()).toEqual(["newer", "older"]);
    const newer = await status("newer");
    expect(newer.command_count).toBe(0);

    // reads leave the order and the activity time alone
    const r = await pyro(["workspace", "file", "read", "older", "note.txt", "--json"], { home });
    expect(r.json.content).toBe("hi\n");
    expect(await listed()).toEqual(["newer", "older"]);
    expect((await status("newer")).last_activity_at).toBe(newer.last_activity_at);
  });
});
