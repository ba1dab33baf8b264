/**
 * How to start pyro itself again (the detached supervisor: selfCommand) and how to name it
 * (chat client registrations: selfPathCommand).
 *
 * Invariant: a supervisor runs the very executable of the process that starts it, even when
 * the file was replaced meanwhile (an upgrade, a rebuild). The kernel then reports the running
 * executable as "PATH (deleted)", a path that does not exist: spawning it failed with
 * FILE_NOT_FOUND, so a long-running `pyro mcp serve` could no longer create or start any
 * workspace after an upgrade (and the crash matrix failed now and then while another test
 * rebuilt dist/). `/proc/self/exe` still reaches the running image, so the supervisor speaks
 * exactly the protocol of the process that launched it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { isCompiled, REPO_ROOT } from "../vmm/agent-path.ts";

const DELETED = " (deleted)";

/** This pyro by the path it was started from (what a registration should name). */
export function selfPathCommand(): string[] {
  const exe = process.execPath.endsWith(DELETED)
    ? process.execPath.slice(0, -DELETED.length)
    : process.execPath;
  return isCompiled() ? [exe] : [exe, join(REPO_ROOT, "src", "main.ts")];
}

/** argv prefix that runs this very pyro again, even if its file was replaced since it started. */
export function selfCommand(): string[] {
  const [exe, ...rest] = selfPathCommand();
  const replaced = process.execPath.endsWith(DELETED) || !existsSync(exe as string);
  return [replaced && existsSync("/proc/self/exe") ? "/proc/self/exe" : (exe as string), ...rest];
}
