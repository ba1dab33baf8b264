/** Test helper: a pyro kernel from PYRO_TEST_KERNEL or the kernel build cache, else null. */
import { existsSync } from "node:fs";
import { join } from "node:path";

export function findTestKernel(): string | null {
  const fromEnv = process.env.PYRO_TEST_KERNEL;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  // The build cache the test runner uses (test/preload.ts sets PYRO_BUILD_CACHE).
  const cache = process.env.PYRO_BUILD_CACHE ?? join(import.meta.dir, "../../../.cache/build");
  const root = join(cache, "kernel");
  if (!existsSync(root)) return null;
  for (const rel of new Bun.Glob("*/vmlinux").scanSync({ cwd: root, onlyFiles: true }))
    return join(root, rel);
  return null;
}
