/** Entry of the `pyro` executable: the CLI (which also hosts `mcp serve` and the supervisor mode). */
import { runCli } from "./cli/index.ts";

const code = await runCli(process.argv.slice(2));
// -1: a long-running mode (MCP server, supervisor) owns the process now.
if (code >= 0) {
  // Let stdout drain before exiting (pipes may be slow readers).
  await new Promise((r) => process.stdout.write("", r));
  process.exit(code);
}
