/**
 * Find the pyro-agent executable. Precedence:
 *  1. PYRO_AGENT_PATH (explicit override, never second-guessed);
 *  2. compiled pyro: the agent embedded in the executable, extracted once per agent build into
 *     `<cache>/pyro/agent/<sha256>/pyro-agent` (cache = $PYRO_AGENT_CACHE, else
 *     $XDG_CACHE_HOME or ~/.cache) and verified against the sha256 recorded at build time;
 *  3. compiled pyro without an embedded agent: a pyro-agent beside the executable (the old
 *     two-file layout). The embedded agent wins over a file beside pyro because it is, by
 *     construction, the agent this pyro was built with (same version and protocol); a file
 *     left beside pyro by an older two-file install may not be;
 *  4. source runs (bun src/main.ts): guest/main.ts under bun for the host backend, and
 *     dist/pyro-agent as the binary baked into a rootfs.
 * Invariants: the extracted file appears only complete (temp file + rename, mode 0755); it is
 * hashed before its first use in each process (a corrupt or foreign file is replaced, a
 * rewrite later in the process is caught by its size/mtime/inode stamp); agents of other builds
 * are pruned from the cache a week after they were extracted; nothing is extracted
 * or hashed unless the agent is actually needed (`pyro --version` never touches it).
 */
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import type { Env } from "../base/paths.ts";
import { PyroError } from "../protocol/errors.ts";
import embedded, { type EmbeddedAgent } from "./embedded-agent.ts";

/** Inside a compiled executable Bun.main lives in the embedded /$bunfs (import.meta.path does
 * not tell: bytecode builds keep the source path there). */
export function isCompiled(): boolean {
  return Bun.main.startsWith("/$bunfs/") || Bun.main.startsWith("B:/~BUN");
}

export const REPO_ROOT = resolve(import.meta.dir, "../..");

/** argv prefix that starts the agent on the host. */
export function agentCommand(env: Env = process.env): string[] {
  if (env.PYRO_AGENT_PATH) return [env.PYRO_AGENT_PATH];
  if (isCompiled()) return [compiledAgent(env)];
  const src = join(REPO_ROOT, "guest", "main.ts");
  if (existsSync(src)) return [process.execPath, src];
  const built = join(REPO_ROOT, "dist", "pyro-agent");
  if (existsSync(built)) return [built];
  throw new PyroError("INTERNAL", "pyro-agent not found; set PYRO_AGENT_PATH");
}

/** The compiled agent binary (what goes into a rootfs). */
export function agentBinary(env: Env = process.env): string {
  if (env.PYRO_AGENT_PATH) return env.PYRO_AGENT_PATH;
  if (isCompiled()) return compiledAgent(env);
  const built = join(REPO_ROOT, "dist", "pyro-agent");
  if (existsSync(built)) return built;
  throw new PyroError(
    "INTERNAL",
    "pyro-agent executable not found: run `bun run build` (or set PYRO_AGENT_PATH)",
  );
}

/** Where extracted agents live: one directory per agent sha256. */
export function agentCacheDir(env: Env = process.env): string {
  if (env.PYRO_AGENT_CACHE) return env.PYRO_AGENT_CACHE;
  const cache = env.XDG_CACHE_HOME || join(env.HOME || os.homedir(), ".cache");
  return join(cache, "pyro", "agent");
}

function compiledAgent(env: Env): string {
  if (embedded) return extractAgent(embedded, agentCacheDir(env));
  const beside = join(dirname(process.execPath), "pyro-agent");
  if (existsSync(beside)) return beside;
  throw new PyroError("INTERNAL", "this pyro has no embedded pyro-agent and none beside it", {
    hint: "set PYRO_AGENT_PATH, or reinstall pyro",
  });
}

/** Paths verified in this process, with the stamp they had then. */
const verified = new Map<string, string>();

const stampOf = (path: string) => {
  const s = statSync(path);
  return `${s.size}:${s.mtimeMs}:${s.ino}`;
};

function sha256OfFile(path: string): string {
  const h = new Bun.CryptoHasher("sha256");
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (let n = readSync(fd, buf); n > 0; n = readSync(fd, buf)) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

function isGood(path: string, agent: EmbeddedAgent): boolean {
  try {
    const stamp = stampOf(path);
    if (verified.get(path) === stamp) return true;
    if (statSync(path).size !== agent.size || sha256OfFile(path) !== agent.sha256) return false;
    verified.set(path, stamp);
    return true;
  } catch {
    return false;
  }
}

/** The verified extracted agent, extracting (again) when it is missing, partial or corrupt. */
export function extractAgent(agent: EmbeddedAgent, cacheDir: string): string {
  const dir = join(cacheDir, agent.sha256);
  const path = join(dir, "pyro-agent");
  if (isGood(path, agent)) return path;
  let bytes: Uint8Array;
  try {
    bytes = Bun.zstdDecompressSync(readFileSync(agent.path));
  } catch (err) {
    throw new PyroError("INTERNAL", `cannot read the pyro-agent embedded in pyro: ${(err as Error).message}`);
  }
  const sha = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  if (bytes.byteLength !== agent.size || sha !== agent.sha256) {
    throw new PyroError("INTERNAL", "the pyro-agent embedded in pyro does not match its build-time sha256", {
      hint: "the pyro executable is damaged: download it again",
    });
  }
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    writeFileSync(tmp, bytes, { mode: 0o755 });
    chmodSync(tmp, 0o755);
    // rename(2) replaces a corrupt file atomically; a process still running the old inode keeps it.
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new PyroError("IO_ERROR", `cannot extract pyro-agent into ${dir}: ${(err as Error).message}`, {
      hint: "make the cache directory writable, or point PYRO_AGENT_CACHE (or XDG_CACHE_HOME) elsewhere",
    });
  }
  verified.set(path, stampOf(path));
  pruneOldAgents(cacheDir, agent.sha256);
  return path;
}

/** Agents of other builds are dropped after a week (a pyro still using one re-extracts it). */
const STALE_AGENT_MS = 7 * 24 * 3600 * 1000;

function pruneOldAgents(cacheDir: string, keep: string): void {
  for (const name of readdirSync(cacheDir)) {
    const dir = join(cacheDir, name);
    try {
      if (name !== keep && /^[0-9a-f]{64}$/.test(name) && Date.now() - statSync(dir).mtimeMs > STALE_AGENT_MS)
        rmSync(dir, { recursive: true, force: true });
    } catch {
      // another pyro pruned it first
    }
  }
}
