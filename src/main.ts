/** Entry of the `pyro` executable: the CLI (which also hosts `mcp serve` and the supervisor mode). */

async function main(argv: string[]): Promise<void> {
  // --version answers before the command tree (and everything it imports) is loaded.
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
    const { PYRO_VERSION } = await import("./protocol/version.ts");
    process.stdout.write(`pyro ${PYRO_VERSION}\n`);
    process.exit(0);
  }
  const { runCli } = await import("./cli/index.ts");
  const code = await runCli(argv);
  // -1: a long-running mode (MCP server, supervisor) owns the process now.
  if (code >= 0) {
    // Let stdout drain before exiting (pipes may be slow readers). Not write("", cb): in Bun
    // an empty write's callback fires before earlier data has left (a 400 KB --json was cut).
    await new Promise<void>((r) => {
      process.stdout.once("error", () => r());
      process.stdout.end(() => r());
    });
    process.exit(code);
  }
}

// No top-level await: the executables are compiled to bytecode, which needs it.
void main(process.argv.slice(2));
