import type { ProgressSink } from "../base/progress.ts";
import type { Env } from "./paths.ts";
import { pyroHome } from "./paths.ts";

/** What every operation needs: where state lives, the environment, a progress sink (stderr in the CLI). */
export interface Ctx {
  home: string;
  env: Env;
  progress: ProgressSink;
  /** live output of exec/run (CLI streams to the terminal; MCP collects) */
  live?: { stdout?: (b: Uint8Array) => void; stderr?: (b: Uint8Array) => void };
  /**
   * MCP only (src/mcp/host-paths.ts): throws unless the real directory about to receive a
   * host write lies under a writable granted root. Called again right before writing.
   * Unset for the CLI and SDK, which have full host access.
   */
  guardHostWrite?: (realDir: string) => void;
}

export function makeCtx(env: Env = process.env, progress: ProgressSink = () => {}): Ctx {
  return { home: pyroHome(env), env, progress };
}

export function maxActive(env: Env): number {
  const n = Number(env.PYRO_MAX_ACTIVE_VMS);
  return Number.isInteger(n) && n > 0 ? n : 4;
}
