import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, freshHome, pyro } from "./helpers.ts";
import { snapshotSuite } from "./snapshot-cases.ts";

let home = "";
beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
});
snapshotSuite("host compat", {
  home: () => home,
  createArgs: ["--allow-host-compat"],
  guest: false,
  timeoutMs: 60_000,
});

describe("host compat: snapshots from an older pyro (tars without a digest)", () => {
  test("are listed as tar and restored, baseline and named", async () => {
    const ws = (...args: string[]) => pyro(["workspace", ...args], { home });
    const seed = join(home, "legacy-seed");
    mkdirSync(seed, { recursive: true });
    writeFileSync(join(seed, "a.txt"), "seeded\n");
    const c = await ws("create", "--allow-host-compat", "--seed-path", seed, "--json");
    expect(c.code, c.stdout).toBe(0);
    const id = c.json.workspace_id as string;
    try {
      await ws("exec", id, "--", "sh", "-c", "echo snap > b.txt");
      expect((await ws("snapshot", "create", id, "old", "--json")).code).toBe(0);
      // rewrite them as an older pyro left them: metadata without format and digest, no baseline.json
      const dir = join(home, "workspaces", id);
      const meta = JSON.parse(readFileSync(join(dir, "snapshots", "old.json"), "utf8"));
      writeFileSync(
        join(dir, "snapshots", "old.json"),
        JSON.stringify({ name: "old", created_at: meta.created_at, size_bytes: 1, kind: "named" }),
      );
      rmSync(join(dir, "baseline.json"));
      const list = await ws("snapshot", "list", id, "--json");
      expect(list.json.snapshots.map((s: { name: string; format: string }) => [s.name, s.format])).toEqual([
        ["baseline", "tar"],
        ["old", "tar"],
      ]);
      const ls = async () => (await ws("exec", id, "--json", "--", "sh", "-c", "ls; cat *.txt")).json.stdout;
      await ws("exec", id, "--", "sh", "-c", "echo later > c.txt");
      expect((await ws("reset", id, "--snapshot", "old", "--json")).json.restored_from).toBe("old");
      expect(await ls()).toBe("a.txt\nb.txt\nseeded\nsnap\n");
      expect((await ws("reset", id, "--json")).json.restored_from).toBe("baseline");
      expect(await ls()).toBe("a.txt\nseeded\n");
      expect((await ws("diff", id, "--json")).json.files).toEqual([]);
    } finally {
      await ws("delete", id);
    }
  }, 60_000);
});
