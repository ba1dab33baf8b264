/**
 * Loaded before every test file (bunfig.toml): tests never touch the real home. PYRO_HOME
 * points at a fresh temp dir per test process; HOME too, so nothing falls back to it.
 * The build cache (kernel, debootstrap trees) is shared: PYRO_BUILD_CACHE, else /var/cache/pyro/build
 * as root, else <repo>/.cache/build.
 * The temp dir goes when the test process exits (a full run leaves ~10 GB of homes and disk
 * images otherwise); PYRO_KEEP_TEST_TMP=1 keeps it for a post-mortem.
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dir, "..");
const base = mkdtempSync(join(os.tmpdir(), "pyro-test-"));
// Same default as scripts/setup.sh and scripts/test.ts.
process.env.PYRO_BUILD_CACHE ??=
  process.getuid?.() === 0 ? "/var/cache/pyro/build" : join(repo, ".cache", "build");
// The compiled pyro extracts its embedded agent into this cache: shared (like the build cache)
// so each test process does not unpack its own 108 MB copy.
process.env.PYRO_AGENT_CACHE ??= join(process.env.PYRO_BUILD_CACHE as string, "..", "agent");
process.env.PYRO_HOME = join(base, "home");
process.env.HOME = join(base, "user-home");
process.env.XDG_DATA_HOME = join(base, "user-home", ".local", "share");
process.env.XDG_CACHE_HOME = join(base, "user-home", ".cache");
process.env.PYRO_TEST_TMP = base;
// bun:test's afterAll in a preload runs once, after every file (process "exit" does not fire
// under bun test).
if (process.env.PYRO_KEEP_TEST_TMP !== "1")
  afterAll(() => {
    try {
      rmSync(base, { recursive: true, force: true });
    } catch {}
  });
