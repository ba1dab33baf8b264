/**
 * `pyro env prune` also removes what killed environment builds left in the build cache (a
 * kernel build's scratch tree is ~1.5 GB), keeping a running build's (src/env/build/cache.ts).
 */
import { beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { processStart } from "../src/base/proc.ts";
import { ensureBuilt, freshHome, pyro } from "./helpers.ts";

beforeAll(async () => {
  await ensureBuilt();
}, 300_000);

test("env prune removes a dead builder's scratch tree and keeps a live one's", async () => {
  const cache = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "buildcache-"));
  const dead = Bun.spawnSync(["true"]).pid;
  const stale = join(cache, "kernel", `.build-abc-${dead}-p1-m0`);
  const live = join(cache, "kernel", `.build-abc-${process.pid}-p${processStart(process.pid)}-m0`);
  for (const t of [stale, live]) {
    mkdirSync(join(t, "linux-source-6.1"), { recursive: true });
    writeFileSync(join(t, "linux-source-6.1", "Makefile"), "all:\n");
  }
  const r = await pyro(["env", "prune", "--json"], { home: freshHome(), env: { PYRO_BUILD_CACHE: cache } });
  expect(r.code).toBe(0);
  expect(existsSync(stale)).toBe(false);
  expect(existsSync(live)).toBe(true);
});
