/**
 * Content-addressed cache helpers shared by the kernel and rootfs builds: a key is the
 * sha256 of every input that changes the output, and a result becomes visible only by an
 * atomic rename, so a crash never leaves a half-built entry that looks finished.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";

/** sha256 (hex) over the parts; JSON framing keeps ["ab","c"] and ["a","bc"] apart. */
export function cacheKey(parts: readonly string[]): string {
  return new Bun.CryptoHasher("sha256").update(JSON.stringify(parts)).digest("hex");
}

/** A scratch name beside `final`, unique per process, recognisable by removeStale. */
export function scratchPath(dir: string, tag: string, name: string): string {
  return join(dir, `.${tag}-${name}-${process.pid}-${Date.now().toString(36)}`);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Remove scratch entries in `dir` left by crashed builds (their pid is gone). */
export function removeStale(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir)) {
    const m = /^\.[a-z]+-.+-(\d+)-[0-9a-z]+$/.exec(entry);
    if (m && !pidAlive(Number(m[1]))) rmSync(join(dir, entry), { recursive: true, force: true });
  }
}

/**
 * Move a finished scratch directory into place. If another process published the same key
 * first (rename onto a non-empty directory fails), keep theirs: same key, same content.
 */
export async function publishDir(scratch: string, final: string): Promise<void> {
  try {
    await rename(scratch, final);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === "ENOTEMPTY" || code === "EEXIST") && existsSync(final)) {
      await rm(scratch, { recursive: true, force: true });
      return;
    }
    throw err;
  }
}
