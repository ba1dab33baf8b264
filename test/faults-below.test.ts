/**
 * Faults from below on the host (issue 15, part 2; docs/reliability.md "Faults from below"):
 * a host disk that fills up under export, snapshot create and seed, and a snapshot cut short.
 * Host compat workspaces (the host-side writers are the same for every backend) on small
 * tmpfs mounts this test makes (root): the export destination, or the whole PYRO_HOME.
 * Each case first shows the operation works with room, then fills the disk and checks:
 * a clear error (IO_ERROR, errno ENOSPC in the details, exit 74), nothing half-written left
 * (no output, staging, temp file, snapshot, workspace directory, record or process), the
 * workspace still serves, and freeing space is enough for the operation to succeed.
 * The guest's own disk filling up (ENOSPC inside /workspace) is in test/faults-guest.test.ts.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
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
    "export into a full destination: IO_ERROR, nothing at the output, the next export works",
    async () => {
      const home = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "home-"));
      const dest = smallDisk(1);
      const c = await pyro(["workspace", "create", HC, "--json"], { home });
      expect(c.code, c.stdout + c.stderr).toBe(0);
      const id = c.json.workspace_id as string;
      try {
        const w = await pyro(
          [
            "workspace",
            "exec",
            id,
            "--json",
            "--",
            "sh",
            "-c",
            "head -c 3000000 /dev/urandom >big.bin; echo small >small.txt",
          ],
          { home },
        );
        expect(w.json.exit_code).toBe(0);
        // The probe works: with room, an export lands.
        const ok = await pyro(
          ["workspace", "export", id, "small.txt", "--output", join(dest, "small.txt"), "--json"],
          {
            home,
          },
        );
        expect(ok.code, ok.stdout).toBe(0);
        expect(tree(dest)).toEqual(["small.txt"]);

        const full = await pyro(
          ["workspace", "export", id, "big.bin", "--output", join(dest, "big.bin"), "--json"],
          {
            home,
          },
        );
        expectDiskFull(full);
        expect(tree(dest)).toEqual(["small.txt"]); // no output, no staging directory
        // The workspace still serves, and with room again the same export works.
        rmSync(join(dest, "small.txt"));
        const big = statSync(join(home, "workspaces", id, "root", "big.bin")).size;
        expect(big).toBe(3_000_000);
        const again = await pyro(
          ["workspace", "export", id, "small.txt", "--output", join(dest, "again.txt"), "--json"],
          {
            home,
          },
        );
        expect(again.code, again.stdout).toBe(0);
      } finally {
        await pyro(["workspace", "delete", id, "--json"], { home });
      }
    },
    120_000,
  );

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

  root.test(
    "seed into a full PYRO_HOME: IO_ERROR, no workspace, directory or process left; a smaller seed works",
    async () => {
      const home = smallDisk(8);
      const seed = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "seed-"));
      mkdirSync(join(seed, "src"));
      writeFileSync(join(seed, "src", "main.txt"), "hello\n");
      // The probe works: a seed that fits.
      const ok = await pyro(["workspace", "create", HC, "--name", "fits", "--seed-path", seed, "--json"], {
        home,
      });
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      expect((await pyro(["workspace", "delete", "fits", "--json"], { home })).code).toBe(0);
      const empty = tree(join(home, "workspaces"));

      for (const f of ["a.bin", "b.bin", "c.bin"]) writeFileSync(join(seed, f), randomBytes(3_000_000));
      const full = await pyro(
        ["workspace", "create", HC, "--name", "toobig", "--seed-path", seed, "--json"],
        { home },
      );
      expectDiskFull(full);
      const list = await pyro(["workspace", "list", "--json"], { home });
      expect(list.json.workspaces).toEqual([]);
      expect(tree(join(home, "workspaces"))).toEqual(empty);
      expect(processesMatching(home)).toEqual([]);
      // The name is free and a seed that fits works again.
      for (const f of ["a.bin", "b.bin", "c.bin"]) rmSync(join(seed, f));
      const again = await pyro(
        ["workspace", "create", HC, "--name", "toobig", "--seed-path", seed, "--json"],
        { home },
      );
      expect(again.code, again.stdout + again.stderr).toBe(0);
      await pyro(["workspace", "delete", "toobig", "--json"], { home });
      expect(processesMatching(home)).toEqual([]);
    },
    180_000,
  );
});

/** Incompressible bytes (crypto.getRandomValues fills at most 64 KiB per call). */
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536)
    crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  return out;
}
