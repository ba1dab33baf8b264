/**
 * patch apply under the directory↔symlink swap: while root/victim (a directory) and
 * root/victim.l (a symlink to a directory outside the root) keep being exchanged, patches
 * that add files in new directories under victim/ (parents created by the commit) and then
 * delete them again (emptied directories removed) never create, write or remove anything
 * outside. The probe first shows that the old way (lstat, then mkdir by path string) does
 * create directories outside under the same swap.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, rmdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { snapshotTree, swapper, tempDir } from "../src/protocol/archive/testutil.ts";
import { applyPatch } from "./patch.ts";

const EXPECTED_FAILURES = new Set([
  "PATH_OUTSIDE_WORKSPACE",
  "PATCH_REJECTED",
  "FILE_NOT_FOUND",
  "NOT_A_DIRECTORY",
]);

let tmp: Awaited<ReturnType<typeof tempDir>>;
let root: string;
let outside: string;
let swap: Bun.Subprocess | undefined;

beforeEach(async () => {
  tmp = await tempDir("patch-race");
  const base = realpathSync(tmp.path);
  root = join(base, "root");
  outside = join(base, "outside");
  mkdirSync(join(root, "victim"), { recursive: true });
  mkdirSync(outside);
  symlinkSync(outside, join(root, "victim.l"));
});
afterEach(async () => {
  swap?.kill(9);
  await swap?.exited;
  await tmp.cleanup();
});

const add = (path: string) => `--- /dev/null\n+++ b/${path}\n@@ -0,0 +1 @@\n+x\n`;
const del = (path: string) => `--- a/${path}\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n`;

test("patch apply creates and removes directories only inside while a parent is swapped for a link out", async () => {
  swap = swapper(root, "victim", "victim.l");
  for (let i = 0; i < 500 && !lstatSync(join(root, "victim")).isSymbolicLink(); i++) await Bun.sleep(10);

  // the probe: the old ensureDirs (lstat says "directory", then mkdir by path string) escapes
  let escaped = 0;
  for (let i = 0; i < 50_000 && escaped === 0; i++) {
    try {
      if (!lstatSync(join(root, "victim")).isDirectory()) continue;
      mkdirSync(join(root, "victim", `probe_${i}`));
      if (existsSync(join(outside, `probe_${i}`))) escaped++;
    } catch {}
  }
  expect(escaped).toBeGreaterThan(0);
  for (const n of readdirSync(outside)) rmdirSync(join(outside, n));
  const outsideBefore = await snapshotTree(outside, { mtimes: true });

  const ROUNDS = 150;
  const tally = { added: 0, deleted: 0, failures: {} as Record<string, number> };
  const fail = (err: unknown) => {
    const code = (err as { code?: string }).code ?? String(err);
    tally.failures[code] = (tally.failures[code] ?? 0) + 1;
  };
  const added: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    await applyPatch(root, add(`victim/new${i}/deeper/f`)).then(() => {
      tally.added++;
      added.push(i);
    }, fail);
  }
  // Deletions meet the swap too; on a loaded machine a whole pass can meet only the link, so
  // passes repeat (over what is still there) until some went through.
  let remaining = added;
  for (let pass = 0; pass < 20 && tally.deleted === 0 && remaining.length > 0; pass++) {
    const still: number[] = [];
    for (const i of remaining) {
      await applyPatch(root, del(`victim/new${i}/deeper/f`)).then(
        () => tally.deleted++,
        (err) => {
          fail(err);
          still.push(i);
        },
      );
    }
    remaining = still;
  }
  expect(swap.exitCode).toBeNull(); // the swap ran throughout
  swap.kill(9);
  await swap.exited;
  console.error(`patch race tally: ${JSON.stringify(tally)}`);

  expect(await snapshotTree(outside, { mtimes: true })).toEqual(outsideBefore);
  for (const code of Object.keys(tally.failures)) expect(EXPECTED_FAILURES.has(code)).toBe(true);
  // the race was on: some patches went through, some met the link
  expect(tally.added).toBeGreaterThan(0);
  expect(tally.added).toBeLessThan(ROUNDS);
  expect(tally.deleted).toBeGreaterThan(0);
  // in the raced directory: exactly the additions not deleted, their emptied parents gone
  const real = ["victim", "victim.l"].map((n) => join(root, n)).find((d) => lstatSync(d).isDirectory())!;
  const left = readdirSync(real).filter((n) => n.startsWith("new"));
  expect(left.length).toBe(tally.added - tally.deleted);
  for (const n of left) expect(readdirSync(join(real, n, "deeper"))).toEqual(["f"]);
}, 120_000);
