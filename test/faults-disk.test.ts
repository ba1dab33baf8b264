/**
 * Host disk full (issue 15, part 2), host compat, on small tmpfs mounts this test makes
 * (root): a clear error and nothing half-written.
 * - export into a full destination: an error naming the lack of space, no output, no
 *   staging directory left beside it, and the same export into roomy space works;
 * - create seeded from a directory larger than PYRO_HOME's free space: an error, and no
 *   workspace, record or directory left; the home still works for a small create.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { needs } from "./capabilities.ts";
import { ensureBuilt, processesMatching, pyro } from "./helpers.ts";

const root = needs("root");
const HC = { PYRO_BACKEND: "host" };

function tmpfs(sizeKiB: number): string {
  const dir = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "tmpfs-"));
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${sizeKiB}k`, "tmpfs", dir]);
  if (r.exitCode !== 0) throw new Error(`mount tmpfs: ${r.stderr.toString()}`);
  mounts.push(dir);
  return dir;
}
const mounts: string[] = [];

root.describe("host disk full (host compat, tmpfs)", () => {
  beforeAll(async () => {
    await ensureBuilt();
  }, 300_000);
  afterAll(() => {
    for (const m of mounts) Bun.spawnSync(["umount", "-l", m]);
  });

  root.test(
    "export into a full destination: clear error, nothing written, roomy space works",
    async () => {
      const home = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "home-"));
      const seed = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "seed-"));
      writeFileSync(join(seed, "big.bin"), Buffer.alloc(2 << 20, 7));
      const made = await pyro(
        ["workspace", "create", "debian:12", "--allow-host-compat", "--seed-path", seed, "--json"],
        { home, env: HC },
      );
      expect(made.code).toBe(0);
      const id = made.json.workspace_id as string;
      try {
        const small = tmpfs(256);
        const full = await pyro(
          ["workspace", "export", id, "big.bin", "--output", join(small, "big.bin"), "--json"],
          {
            home,
            env: HC,
          },
        );
        expect(full.code).not.toBe(0);
        expect(full.json.code).not.toBe("INTERNAL");
        expect(`${full.json.message}`).toMatch(/space|ENOSPC/i);
        expect(readdirSync(small)).toEqual([]); // no output, no staging
        // the probe: the same export into room succeeds
        const roomy = tmpfs(8192);
        const ok = await pyro(
          ["workspace", "export", id, "big.bin", "--output", join(roomy, "big.bin"), "--json"],
          {
            home,
            env: HC,
          },
        );
        expect(ok.code).toBe(0);
        expect(readdirSync(roomy)).toEqual(["big.bin"]);
      } finally {
        await pyro(["workspace", "delete", id], { home, env: HC });
      }
    },
    120_000,
  );

  root.test(
    "create seeded beyond PYRO_HOME's free space: clear error, nothing left, the home still works",
    async () => {
      const home = tmpfs(4096);
      const seed = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "seed-"));
      mkdirSync(join(seed, "d"));
      writeFileSync(join(seed, "d", "big.bin"), Buffer.alloc(8 << 20, 7));
      const r = await pyro(
        [
          "workspace",
          "create",
          "debian:12",
          "--allow-host-compat",
          "--seed-path",
          seed,
          "--name",
          "big",
          "--json",
        ],
        { home, env: HC },
      );
      expect(r.code).not.toBe(0);
      expect(r.json.code).not.toBe("INTERNAL");
      expect(`${r.json.message}`).toMatch(/space|ENOSPC/i);
      expect(readdirSync(join(home, "workspaces"))).toEqual([]);
      expect(processesMatching(home)).toEqual([]);
      // the probe and the recovery: a small create in the same home works, the name is free
      const small = await pyro(
        ["workspace", "create", "debian:12", "--allow-host-compat", "--name", "big", "--json"],
        {
          home,
          env: HC,
        },
      );
      expect(small.code).toBe(0);
      await pyro(["workspace", "delete", "big"], { home, env: HC });
      expect(readdirSync(join(home, "workspaces"))).toEqual([]);
    },
    120_000,
  );
});
