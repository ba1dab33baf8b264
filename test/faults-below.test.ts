/**
 * Faults from below on the host (issue 15, part 2; docs/reliability.md "Faults from below"):
 * a host disk that fills up under snapshot create, and a snapshot cut short. A host compat
 * workspace (the tar writer and the digest check are host code) with its whole PYRO_HOME on
 * a small tmpfs this test mounts (root). The case first shows a snapshot works with room,
 * then fills the disk and checks: a clear error (IO_ERROR, errno ENOSPC in the details, exit
 * 74) instead of the crash it was (Bun's FileSink raised the ENOSPC where nothing could catch
 * it, leaving a .tar.tmp-PID), nothing half-written (no temp file, data or metadata, and
 * `snapshot list` unchanged), and freeing space is enough for the same snapshot to succeed.
 * Export and seed into a full disk: test/faults-disk.test.ts; the guest's own disk full:
 * test/faults-guest.test.ts.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { mkdtempSync, readdirSync, statSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { needs } from "./capabilities.ts";
import { ensureBuilt, type PyroResult, processesMatching, pyro } from "./helpers.ts";

const HC = "--allow-host-compat";
const root = needs("root");

/** Mount a tmpfs of `mib` MiB at a fresh directory; unmounted in afterAll. */
const mounts: string[] = [];
function smallDisk(mib: number): string {
  const dir = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "full-"));
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${mib}m,mode=0700`, "tmpfs", dir]);
  if (r.exitCode !== 0) throw new Error(`mount tmpfs: ${r.stderr.toString()}`);
  mounts.push(dir);
  return dir;
}

/** Every path under `dir` (relative), for "nothing was left behind" checks. */
function tree(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).sort();
}

/** The disk is full: IO_ERROR (74) with ENOSPC named, as JSON. */
function expectDiskFull(r: PyroResult): void {
  expect(r.code, r.stdout + r.stderr).toBe(74);
  expect(r.json.code).toBe("IO_ERROR");
  expect(r.json.details?.errno).toBe("ENOSPC");
  expect(r.json.message).toContain("no space left");
}

beforeAll(async () => {
  await ensureBuilt();
});

afterAll(() => {
  for (const dir of mounts) Bun.spawnSync(["umount", "-l", dir]);
});

root.describe("faults from below: the host disk fills up", () => {
  root.test(
    "snapshot create on a full PYRO_HOME: IO_ERROR, no temp file or snapshot; freeing space recovers; a truncated snapshot is refused",
    async () => {
      const home = smallDisk(8);
      const c = await pyro(["workspace", "create", HC, "--json"], { home });
      expect(c.code, c.stdout + c.stderr).toBe(0);
      const id = c.json.workspace_id as string;
      const snapDir = join(home, "workspaces", id, "snapshots");
      const names = async () =>
        (
          (await pyro(["workspace", "snapshot", "list", id, "--json"], { home })).json.snapshots as {
            name: string;
          }[]
        )
          .map((s) => s.name)
          .filter((n) => n !== "baseline");
      try {
        const exec = (script: string) =>
          pyro(["workspace", "exec", id, "--json", "--", "sh", "-c", script], { home });
        expect((await exec("echo one >a.txt")).json.exit_code).toBe(0);
        // The probe works: with room, a snapshot is taken.
        const s0 = await pyro(["workspace", "snapshot", "create", id, "s0", "--json"], { home });
        expect(s0.code, s0.stdout + s0.stderr).toBe(0);

        // 5 MB in /workspace on an 8 MiB home: its tar cannot fit beside it.
        expect((await exec("head -c 5000000 /dev/urandom >big.bin")).json.exit_code).toBe(0);
        const before = tree(snapDir);
        const full = await pyro(["workspace", "snapshot", "create", id, "s1", "--json"], { home });
        expectDiskFull(full);
        expect(full.json.message).toContain("s1");
        expect(tree(snapDir)).toEqual(before); // no s1.tar.tmp-*, no s1.tar, no s1.json
        expect(await names()).toEqual(["s0"]);

        // Freeing space is enough: the same snapshot succeeds.
        expect((await exec("rm big.bin; echo two >a.txt")).json.exit_code).toBe(0);
        const s1 = await pyro(["workspace", "snapshot", "create", id, "s1", "--json"], { home });
        expect(s1.code, s1.stdout + s1.stderr).toBe(0);
        expect(await names()).toEqual(["s0", "s1"]);

        // A snapshot cut short (its tar truncated, as a full disk or a crash of a copy
        // tool could leave it): reset refuses it before changing anything.
        const tar = join(snapDir, "s0.tar");
        truncateSync(tar, Math.floor(statSync(tar).size / 2));
        const reset = await pyro(["workspace", "reset", id, "--snapshot", "s0", "--json"], { home });
        expect(reset.code, reset.stdout + reset.stderr).toBe(65);
        expect(reset.json.code).toBe("SNAPSHOT_CORRUPT");
        expect((await exec("cat a.txt")).json.stdout).toBe("two\n");
        // The intact one still restores.
        const good = await pyro(["workspace", "reset", id, "--snapshot", "s1", "--json"], { home });
        expect(good.code, good.stdout + good.stderr).toBe(0);
        expect((await exec("cat a.txt")).json.stdout).toBe("two\n");
      } finally {
        await pyro(["workspace", "delete", id, "--json"], { home });
      }
      expect(processesMatching(home)).toEqual([]);
    },
    180_000,
  );
});
