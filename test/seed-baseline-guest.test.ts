/**
 * A seeded create's diff baseline comes from the seed stream (archive.import with baseline:
 * true; guest/baseline.ts captureBaselineFromImport), on a real guest (QEMU; TCG here): the
 * diff right after create is empty, one changed file is exactly that file, and the baseline
 * equals the one a plain `baseline.capture` (the old way: read every file back) takes of the
 * same tree — same root tree id; system git's status is clean on the seed pack's baseline and
 * its fsck passes once the plain capture stored every blob loose — and a deleted seeded file's
 * diff shows its old content (read from the seed pack, guest/baseline.ts) — for a seed
 * with symlinks, a hardlinked file (sent as a copy by the directory packer), modes, an empty
 * directory and a file over the 8 MiB streaming threshold.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, linkSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { callWorkspace } from "../src/manager/client.ts";
import { readRecord } from "../src/manager/record.ts";
import { guest, guestHome } from "./guest-env.ts";
import { processesMatching, pyro } from "./helpers.ts";

let home = "";
let ws = "";
const GITDIR = "/run/pyro/data/pyro-state/baseline.git";

function seedTree(): string {
  const src = join(process.env.PYRO_TEST_TMP as string, "seed-baseline-src");
  mkdirSync(join(src, "src/deep"), { recursive: true });
  mkdirSync(join(src, "empty-dir"));
  writeFileSync(join(src, "README.md"), "# seeded\nline two\n");
  writeFileSync(join(src, "src/main.py"), "print('hello')\n");
  writeFileSync(join(src, "src/deep/data.bin"), Buffer.from([0, 1, 2, 255, 0]));
  writeFileSync(join(src, "run.sh"), "#!/bin/sh\necho run\n");
  chmodSync(join(src, "run.sh"), 0o755);
  writeFileSync(join(src, "private.txt"), "0600\n");
  chmodSync(join(src, "private.txt"), 0o600);
  symlinkSync("src/main.py", join(src, "link-to-main"));
  symlinkSync("/etc/hostname", join(src, "abs-link"));
  linkSync(join(src, "README.md"), join(src, "readme-hardlink"));
  const big = new Uint8Array(9 * 1024 * 1024 + 5);
  for (let i = 0; i < big.length; i += 1024) big[i] = (i / 1024) % 251;
  writeFileSync(join(src, "big.bin"), big);
  return src;
}

async function sh(script: string): Promise<string> {
  const r = await pyro(["workspace", "exec", ws, "--json", "--", "sh", "-c", script], { home });
  expect(r.json?.exit_code).toBe(0);
  return String(r.json.stdout).trim();
}

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  const c = await pyro(
    ["workspace", "create", "debian:12", "--name", "seed-baseline", "--seed-path", seedTree(), "--json"],
    { home },
  );
  expect(c.code).toBe(0);
  expect(c.json.execution_mode).toBe("guest");
  ws = c.json.workspace_id;
}, 1_800_000);

afterAll(async () => {
  if (!ws) return;
  await pyro(["workspace", "delete", ws], { home });
  expect(processesMatching(ws)).toEqual([]);
});

guest.describe("real guest: seeded create's baseline from the seed stream", () => {
  test("real guest: the diff after a seeded create is empty; the baseline equals a plain capture's; one change is exactly that file", async () => {
    const clean = await pyro(["workspace", "diff", ws, "--json"], { home });
    expect(clean.code).toBe(0);
    expect(clean.json.files).toEqual([]);
    expect(clean.json.patch).toBe("");

    const streamed = await sh(`git --git-dir=${GITDIR} rev-parse 'refs/heads/baseline^{tree}'`);
    expect(streamed).toMatch(/^[0-9a-f]{40}$/);
    // the seed's blobs are raw in the seed pack; the index and trees are git's own formats
    expect(await sh(`git --git-dir=${GITDIR} --work-tree=/workspace status --porcelain`)).toBe("");
    expect(await sh(`ls ${GITDIR}/pyro-seed | sed 's/.*\\.//' | sort | tr '\\n' ' '`)).toBe("idx pack");
    // what git lists in the baseline: files, the executable bit, symlinks (no empty dir)
    const listing = await sh(`git --git-dir=${GITDIR} ls-tree -r --format='%(objectmode) %(path)' baseline`);
    expect(listing.split("\n").sort()).toEqual(
      [
        "100644 README.md",
        "120000 abs-link",
        "100644 big.bin",
        "120000 link-to-main",
        "100644 private.txt",
        "100644 readme-hardlink",
        "100755 run.sh",
        "100644 src/deep/data.bin",
        "100644 src/main.py",
      ].sort(),
    );

    // a deleted seeded file: its old content comes from the seed pack; put back, no change
    await sh("rm src/main.py");
    const del = await pyro(["workspace", "diff", ws, "--json"], { home });
    expect(del.code).toBe(0);
    expect(del.json.files.map((f: any) => [f.path, f.status])).toEqual([["src/main.py", "deleted"]]);
    expect(del.json.patch).toContain("-print('hello')");
    await sh("printf \"print('hello')\\n\" > src/main.py");
    const back = await pyro(["workspace", "diff", ws, "--json"], { home });
    expect(back.json.files).toEqual([]);

    // the old way: the agent reads every file back and captures again; same tree
    const r = readRecord(home, ws)!;
    const plain = await callWorkspace(home, r, { op: "baseline.capture" });
    expect(plain.tree).toBe(streamed);
    expect(plain.files).toBe(9);
    // every blob is loose now and whole (git's own check), the seed pack gone
    await sh(`git --git-dir=${GITDIR} fsck --full --strict >/dev/null 2>&1 && echo fsck-ok`);
    expect(await sh(`ls ${GITDIR}/pyro-seed | wc -l`)).toBe("0");

    await sh("echo 'line three' >> README.md");
    const one = await pyro(["workspace", "diff", ws, "--json"], { home });
    expect(one.code).toBe(0);
    // a directory seed stores a hardlinked file as an independent copy (src/protocol/archive/pack.ts),
    // so only README.md changed (hardlink entries in a tar seed: guest/baseline.test.ts)
    expect(one.json.files.map((f: any) => [f.path, f.status])).toEqual([["README.md", "modified"]]);
    expect(one.json.patch).toContain("+line three");
  }, 900_000);
});
