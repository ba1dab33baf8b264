/** How to start pyro itself again (for the detached supervisor). */
import { join } from "node:path";
import { isCompiled, REPO_ROOT } from "../vmm/agent-path.ts";

export function selfCommand(): string[] {
  return isCompiled() ? [process.execPath] : [process.execPath, join(REPO_ROOT, "src", "main.ts")];
}
