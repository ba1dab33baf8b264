/**
 * The part of an operation's context that code below the manager may use: where state
 * lives, the environment, and a progress sink. The manager's Ctx is a superset of it.
 */
import type { Env } from "./paths.ts";
import type { ProgressSink } from "./progress.ts";

export interface HostCtx {
  home: string;
  env: Env;
  /** Progress of long steps: a line, plus how far when known (src/base/progress.ts). */
  progress: ProgressSink;
}
