/** Entry of the `pyro` executable: the CLI (which also hosts `mcp serve` and the supervisor mode). */
import { mark, markStart } from "./base/profile.ts";

async function main(argv: string[]): Promise<void> {
  markStart(argv[0] === "__supervise" ? "sup" : "cli");
  // --version answers before the command tree (and everything it imports) is loaded.
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v")) {
    const { PYRO_VERSION } = await import("./protocol/version.ts");
    process.stdout.write(`pyro ${PYRO_VERSION}\n`);
    process.exit(0);
  }
  if (argv[0] === "__supervise") {
    // The supervisor loads its own modules only, not the CLI's command tree (its start is on
    // every create's path). `--hold`: spawned early by a create, it waits for the go.
    // Held: stdin is read from the start, so a creator that fails or dies (stdin closes with
    // no "g") ends this process at once, even while its modules still load.
    const go = argv.includes("--hold") ? awaitGo() : Promise.resolve(true);
    go.then((ok) => ok || process.exit(1));
    const [{ supervise }, { makeCtx }] = await Promise.all([
      import("./supervisor/main.ts"),
      import("./manager/context.ts"),
    ]);
    if (!(await go)) process.exit(1);
    const id = argv[argv.indexOf("--id") + 1] as string;
    await supervise(makeCtx().home, id, { resume: argv.includes("--resume") });
    return;
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
    mark("cli.exit");
    process.exit(code);
  }
}

/**
 * A supervisor spawned with `--hold` (src/manager/workspaces.ts spawnSupervisor) loads its
 * modules while its creator finishes the data disk and the template, and starts on a "g" on
 * stdin. True: go. False: stdin closed first (the creator failed or died): touch nothing.
 */
async function awaitGo(): Promise<boolean> {
  const reader = Bun.stdin.stream().getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      if (value.includes(0x67)) return true;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// No top-level await: the executables are compiled to bytecode, which needs it.
void main(process.argv.slice(2));
