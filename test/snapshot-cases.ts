/**
 * Snapshots and reset (commands run in /workspace, the default working directory), written once and run on both backends (test/snapshot-host.test.ts,
 * test/snapshot-guest.test.ts): one workspace per backend, driven through the CLI.
 *
 * - a snapshot restores its content exactly (a listing of every path with type, mode and
 *   link target, plus the SHA-256 of every file), and a reset to the baseline restores the
 *   seed with an empty diff;
 * - a crash (PYRO_FAULT, SIGKILL of the CLI) at each step of a reset leaves the old content
 *   or the new one, never a mix: before the swap the old, from the swap on the new;
 * - a snapshot whose data has a flipped byte is refused with SNAPSHOT_CORRUPT and the
 *   workspace keeps running with its current content;
 * - list shows the format, delete removes the data file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { FAULT_STEPS } from "../src/manager/disk-image.ts";
import { pyro } from "./helpers.ts";

const LISTING = [
  "find . -mindepth 1 -printf '%y %m %p -> %l\\n' | LC_ALL=C sort",
  "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum",
].join(" && ");

export function snapshotSuite(
  label: string,
  opts: { home: () => string; createArgs: string[]; guest: boolean; timeoutMs: number },
) {
  describe(`${label}: snapshots and reset`, () => {
    let tmp = "";
    let id = "";
    const home = () => opts.home();
    const ws = (...args: string[]) => pyro(["workspace", ...args], { home: home() });
    const sh = async (script: string) => {
      const r = await ws("exec", id, "--json", "--", "sh", "-c", script);
      if (r.code !== 0 || r.json?.exit_code !== 0) throw new Error(`exec failed: ${r.stdout}${r.stderr}`);
      return r.json.stdout as string;
    };
    const listing = () => sh(LISTING);
    const ensureStarted = async () => {
      const s = await ws("status", id, "--json");
      if (s.json.state !== "started") {
        const st = await ws("start", id, "--json");
        expect(st.code).toBe(0);
      }
    };
    const wsDir = () => join(home(), "workspaces", id);
    const dataFile = (name: string) =>
      opts.guest ? join(wsDir(), "snapshots", `${name}.img`) : join(wsDir(), "snapshots", `${name}.tar`);

    let seedListing = "";
    beforeAll(async () => {
      tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "snap-"));
      const seed = join(tmp, "seed");
      mkdirSync(join(seed, "src", "deep"), { recursive: true });
      writeFileSync(join(seed, "README"), "seeded\n");
      writeFileSync(join(seed, "src", "run.sh"), "#!/bin/sh\necho run\n", { mode: 0o755 });
      writeFileSync(
        join(seed, "src", "deep", "blob.bin"),
        new Uint8Array(300_000).map((_, i) => (i * 7) % 256),
      );
      const c = await ws("create", ...opts.createArgs, "--seed-path", seed, "--json");
      if (c.code !== 0) throw new Error(`create failed: ${c.stdout}${c.stderr}`);
      id = c.json.workspace_id;
      seedListing = await listing();
    }, opts.timeoutMs);
    afterAll(async () => {
      if (id) await ws("delete", id);
    });

    let snapListing = "";
    test(
      "snapshot → change → reset to the snapshot: content exact; reset to baseline: the seed, empty diff",
      async () => {
        // the snapshot's state: an edit, a new file, a removal, a symlink, a mode change
        await sh(
          "echo changed >> README && mkdir -p new/dir && printf 'x%.0s' $(seq 1 5000) > new/dir/f.txt && rm src/deep/blob.bin && ln -s ../README new/link && chmod 600 src/run.sh",
        );
        snapListing = await listing();
        expect(snapListing).not.toBe(seedListing);
        const snap = await ws("snapshot", "create", id, "s1", "--json");
        expect(snap.code, snap.stdout + snap.stderr).toBe(0);
        expect(snap.json.format).toBe(opts.guest ? "disk_image" : "tar");
        // after the snapshot: more changes that the reset must undo
        await sh("rm -rf new && echo later > later.txt && echo again >> README");
        expect(await listing()).not.toBe(snapListing);

        const r = await ws("reset", id, "--snapshot", "s1", "--json");
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(r.json.restored_from).toBe("s1");
        expect(await listing()).toBe(snapListing);
        // the diff baseline is still the seed
        const d = await ws("diff", id, "--json");
        const paths = d.json.files.map((f: { path: string }) => f.path).sort();
        expect(paths).toContain("README");
        expect(paths).toContain("new/dir/f.txt");
        expect(paths).toContain("src/deep/blob.bin");

        const b = await ws("reset", id, "--json");
        expect(b.code, b.stdout + b.stderr).toBe(0);
        expect(b.json.restored_from).toBe("baseline");
        expect(await listing()).toBe(seedListing);
        expect((await ws("diff", id, "--json")).json.files).toEqual([]);
        const list = await ws("snapshot", "list", id, "--json");
        expect(list.json.snapshots.map((s: { name: string; format: string }) => [s.name, s.format])).toEqual([
          ["baseline", opts.guest ? "disk_image" : "tar"],
          ["s1", opts.guest ? "disk_image" : "tar"],
        ]);
      },
      opts.timeoutMs,
    );

    test(
      "a crash at each reset step leaves the old content or the new one, never a mix",
      async () => {
        const swapAt = FAULT_STEPS.indexOf("reset.swapped");
        const resetSteps = FAULT_STEPS.filter((s) => s.startsWith("reset."));
        expect(resetSteps.length).toBe(5);
        for (const step of resetSteps) {
          await ensureStarted();
          // "old": the seed plus a marker unique to this step
          await sh(`echo ${step} > old-marker`);
          const old = await listing();
          const k = await pyro(["workspace", "reset", id, "--snapshot", "s1", "--json"], {
            home: home(),
            env: { PYRO_FAULT: step, PYRO_FAULT_PROC: "cli" },
          });
          expect(k.code, `${step}: the CLI was killed`).toBe(137);
          const st = await ws("status", id, "--json");
          expect(st.code).toBe(0);
          const expectNew = FAULT_STEPS.indexOf(step) >= swapAt;
          // before the stop the old machine is untouched and still running
          if (FAULT_STEPS.indexOf(step) < FAULT_STEPS.indexOf("reset.stopped"))
            expect(st.json.state).toBe("started");
          else expect(st.json.state).toBe("stopped");
          await ensureStarted();
          const now = await listing();
          expect(now, `${step}: ${expectNew ? "new" : "old"} content`).toBe(expectNew ? snapListing : old);
        }
        // the temp copies the crashes left are swept by the next reset
        await ws("reset", id, "--json");
        const debris = readdirSync(wsDir()).filter((n) => /\.(new|tmp)-\d+$/.test(n));
        expect(debris).toEqual([]);
        expect(await listing()).toBe(seedListing);
      },
      opts.timeoutMs * 3,
    );

    test(
      "a crash at each snapshot step leaves no snapshot and no frozen guest after the next snapshot",
      async () => {
        await ensureStarted();
        // the tar path (host compat) has no freeze and no image copy
        const steps = FAULT_STEPS.filter(
          (x) => x.startsWith("snapshot.") && (opts.guest || x === "snapshot.published"),
        );
        expect(steps.length).toBe(opts.guest ? 3 : 1);
        for (const step of steps) {
          const k = await pyro(["workspace", "snapshot", "create", id, "s2", "--json"], {
            home: home(),
            env: { PYRO_FAULT: step, PYRO_FAULT_PROC: "cli" },
          });
          expect(k.code, `${step}: the CLI was killed`).toBe(137);
          const list = await ws("snapshot", "list", id, "--json");
          expect(list.json.snapshots.map((x: { name: string }) => x.name)).not.toContain("s2");
        }
        // the next snapshot thaws a freeze left behind (guest) and sweeps the debris
        const ok = await ws("snapshot", "create", id, "s2", "--json");
        expect(ok.code).toBe(0);
        expect(await sh("echo writable > after-crash.txt && cat after-crash.txt")).toBe("writable\n");
        const left = readdirSync(join(wsDir(), "snapshots")).filter(
          (n) => !/^(s1|s2)\.(img|tar|json)$/.test(n),
        );
        expect(left).toEqual([]);
        expect((await ws("snapshot", "delete", id, "s2", "--json")).json.deleted).toBe(true);
      },
      opts.timeoutMs,
    );

    test(
      "a snapshot with a flipped byte is refused (SNAPSHOT_CORRUPT); the workspace keeps its content",
      async () => {
        await ensureStarted();
        await sh("echo current > current.txt");
        const before = await listing();
        expect((await ws("snapshot", "create", id, "bad", "--json")).code).toBe(0);
        const file = dataFile("bad");
        // flip one byte that the data holds (the ext4 superblock / the first tar header)
        const off = opts.guest ? 1024 + 120 : 10;
        const fd = openSync(file, "r+");
        const b = Buffer.alloc(1);
        readSync(fd, b, 0, 1, off);
        writeSync(fd, Buffer.from([b[0]! ^ 0x20]), 0, 1, off);
        closeSync(fd);
        const r = await ws("reset", id, "--snapshot", "bad", "--json");
        expect(r.code).toBe(65);
        expect(r.json.code).toBe("SNAPSHOT_CORRUPT");
        const st = await ws("status", id, "--json");
        expect(st.json.state).toBe("started");
        expect(await listing()).toBe(before);
        // delete removes the data file with the snapshot
        expect(existsSync(file)).toBe(true);
        expect((await ws("snapshot", "delete", id, "bad", "--json")).json.deleted).toBe(true);
        expect(existsSync(file)).toBe(false);
        expect((await ws("reset", id, "--snapshot", "bad", "--json")).json.code).toBe("SNAPSHOT_NOT_FOUND");
      },
      opts.timeoutMs,
    );
  });
}
