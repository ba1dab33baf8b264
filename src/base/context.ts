/**
 * The part of an operation's context that code below the manager may use: where state
 * lives, the environment, and a progress sink. The manager's Ctx is a superset of it.
 */
import type { Env } from "./paths.ts";

export interface HostCtx {
  home: string;
  env: Env;
  /** One line of progress (stderr in the CLI). */
  progress: (line: string) => void;
}
