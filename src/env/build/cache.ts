/**
 * Content-addressed cache helpers shared by the kernel and rootfs builds: a key is the
 * sha256 of every input that changes the output, and a result becomes visible only by an
 * atomic rename, so a crash never leaves a half-built entry that looks finished.
 *
 * Scratch directories (a kernel build tree is ~1.5 GB) are named after their builder:
 * `.<tag>-<name>-<pid>-p<start>-<time>`, with the builder's pid and its start time (clock
 * ticks since boot), so a builder killed outright (SIGKILL, OOM, power loss) is told apart
 * from a live one, and from a later process that got the same pid. Every build sweeps the
 * whole cache of dead builders' scratch first (sweepBuildCache); a live builder's is kept.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { processStart } from "../../base/proc.ts";

/** sha256 (hex) over the parts; JSON framing keeps ["ab","c"] and ["a","bc"] apart. */
export function cacheKey(parts: readonly string[]): string {
  return new Bun.CryptoHasher("sha256").update(JSON.stringify(parts)).digest("hex");
}

const SELF_START = processStart(process.pid) ?? "0";

/** A scratch name in `dir`, unique per process, naming its builder (see the header). */
export function scratchPath(dir: string, tag: string, name: string): string {
  return join(dir, `.${tag}-${name}-${process.pid}-p${SELF_START}-${Date.now().toString(36)}`);
}

/** `.tag-name-PID[-pSTART]-TIME`: the builder's pid and start time (absent in older names). */
const SCRATCH = /^\.[a-z]+-.+-(\d+)-(?:p(\d+)-)?([0-9a-z]+)$/;

/**
 * Whether the scratch entry `name` (in `dir`) belongs to a builder that is gone: its pid is
 * not running, or runs a process that started after it (pid reuse). Not a scratch name: false.
 */
export function scratchIsStale(dir: string, name: string): boolean {
  const m = SCRATCH.exec(name);
  if (!m) return false;
  const pid = Number(m[1]);
  const start = processStart(pid);
  if (start === null) return true;
  if (m[2] !== undefined) return start !== m[2];
  // an older name without the start time: a process that started after the entry was made
  // is not its builder (start ticks + boot time vs. the entry's mtime)
  try {
    const startedMs = bootTimeMs() + (Number(start) * 1000) / CLOCK_TICKS;
    return startedMs > statSync(join(dir, name)).mtimeMs + 1000;
  } catch {
    return false;
  }
}

/** USER_HZ: /proc/PID/stat counts in these (100 on every Linux architecture pyro runs on). */
const CLOCK_TICKS = 100;
function bootTimeMs(): number {
  try {
    const line = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"));
    return line ? Number(line[1]) * 1000 : 0;
  } catch {
    return 0;
  }
}

/** Remove scratch entries in `dir` left by builders that are gone. Returns what was removed. */
export function removeStale(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const entry of readdirSync(dir)) {
    if (!scratchIsStale(dir, entry)) continue;
    rmSync(join(dir, entry), { recursive: true, force: true });
    removed.push(join(dir, entry));
  }
  return removed;
}

/**
 * Remove every dead builder's scratch anywhere in the build cache: its top level and each
 * directory directly below it (kernel/, debootstrap/, staging/, recipe and image trees).
 * Returns the removed paths.
 */
export function sweepBuildCache(cacheDir: string): string[] {
  if (!existsSync(cacheDir)) return [];
  const removed = removeStale(cacheDir);
  for (const entry of readdirSync(cacheDir, { withFileTypes: true }))
    if (entry.isDirectory() && !entry.name.startsWith("."))
      removed.push(...removeStale(join(cacheDir, entry.name)));
  return removed;
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
