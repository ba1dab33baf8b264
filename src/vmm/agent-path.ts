/** Find the pyro-agent executable: next to the compiled pyro, or the source when run by bun. */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Env } from "../base/paths.ts";
import { PyroError } from "../protocol/errors.ts";

/** Inside a compiled executable Bun.main lives in the embedded /$bunfs (import.meta.path does
 * not tell: bytecode builds keep the source path there). */
export function isCompiled(): boolean {
  return Bun.main.startsWith("/$bunfs/") || Bun.main.startsWith("B:/~BUN");
}

export const REPO_ROOT = resolve(import.meta.dir, "../..");

/** argv prefix that starts the agent on the host. */
export function agentCommand(env: Env = process.env): string[] {
  if (env.PYRO_AGENT_PATH) return [env.PYRO_AGENT_PATH];
  const beside = join(dirname(process.execPath), "pyro-agent");
  if (isCompiled() && existsSync(beside)) return [beside];
  if (!isCompiled()) {
    const built = join(REPO_ROOT, "dist", "pyro-agent");
    const src = join(REPO_ROOT, "guest", "main.ts");
    if (existsSync(src)) return [process.execPath, src];
    if (existsSync(built)) return [built];
  }
  throw new PyroError("INTERNAL", "pyro-agent not found next to pyro; set PYRO_AGENT_PATH");
}

/** The compiled agent binary (what goes into a rootfs). */
export function agentBinary(env: Env = process.env): string {
  if (env.PYRO_AGENT_PATH) return env.PYRO_AGENT_PATH;
  const beside = join(dirname(process.execPath), "pyro-agent");
  if (isCompiled() && existsSync(beside)) return beside;
  const built = join(REPO_ROOT, "dist", "pyro-agent");
  if (existsSync(built)) return built;
  throw new PyroError(
    "INTERNAL",
    "pyro-agent executable not found: run `bun run build` (or set PYRO_AGENT_PATH)",
  );
}
