/**
 * The CLI: a citty command tree generated from the operations table, plus the few commands
 * that are not operations (mcp serve, the internal supervisor mode).
 */
import { type CommandDef, defineCommand, runCommand } from "citty";
import { terminalProgress } from "../base/progress.ts";
import { makeCtx } from "../manager/context.ts";
import { OPERATIONS } from "../operations/index.ts";
import { invoke } from "../operations/invoke.ts";
import type { AnyOperation as Operation } from "../operations/types.ts";
import { PyroError } from "../protocol/errors.ts";
import { PYRO_VERSION } from "../protocol/version.ts";
import { flagSpecs, parseCli } from "./flags.ts";
import { formatHelp, helpWidth } from "./help.ts";
import { mcpCommand } from "./mcp.ts";
import { printJson, renderDefault, reportError } from "./output.ts";

/** Exit code handed back to main (citty's runCommand does not exit by itself). */
let exitCode = 0;

function argsDef(op: Operation): Record<string, any> {
  const out: Record<string, any> = {};
  for (const s of flagSpecs(op)) {
    if (op.positionals?.includes(s.field))
      out[s.field] = { type: "positional", description: s.description, required: false };
    else if (s.field !== op.rest) {
      out[s.flag] = {
        type: s.kind === "boolean" ? "boolean" : "string",
        description:
          s.description +
          ((s.kind === "record" || s.kind === "array") && !s.description.includes("repeatable")
            ? " (repeatable)"
            : ""),
      };
    }
  }
  out.json = { type: "boolean", description: "Print the result (or error) as JSON on stdout." };
  for (const [flag, f] of Object.entries(op.cliFlags ?? {}))
    out[flag] = { type: "boolean", description: f.description };
  return out;
}

function helpText(cmd: CommandDef, op: Operation): string {
  return formatHelp(
    {
      path: ["pyro", ...op.cli],
      cmd,
      rest: op.rest ? `${op.rest.toUpperCase()}...` : undefined,
      description: op.description,
      examples: op.examples,
    },
    helpWidth(),
  );
}

function leaf(op: Operation): CommandDef {
  const cmd: CommandDef = defineCommand({
    meta: { name: op.cli.at(-1), description: op.summary },
    args: argsDef(op),
    async run({ rawArgs }) {
      if (rawArgs.includes("--help") || rawArgs.includes("-h")) {
        const dd = rawArgs.indexOf("--");
        const h = Math.max(rawArgs.indexOf("--help"), rawArgs.indexOf("-h"));
        if (dd < 0 || h < dd) {
          process.stdout.write(helpText(cmd, op));
          return;
        }
      }
      let json = rawArgs.includes("--json");
      try {
        const flags = Object.fromEntries(
          Object.keys(op.cliFlags ?? {}).map((k) => [k, { type: "boolean" as const }]),
        );
        const parsed = parseCli(op, rawArgs, flags);
        json = parsed.json;
        const ctx = makeCtx(process.env, terminalProgress(process.stderr));
        if (op.streamsOutput && !json) {
          ctx.live = { stdout: (b) => process.stdout.write(b), stderr: (b) => process.stderr.write(b) };
        }
        const out = await invoke(op, ctx, parsed.input);
        const printer = Object.entries(op.cliFlags ?? {}).find(([k]) => parsed.extra[k])?.[1];
        if (json) printJson(out);
        else if (printer) {
          const printed = printer.print(out);
          process.stdout.write(typeof printed === "string" ? `${printed}\n` : printed);
        } else if (op.streamsOutput && typeof out.stdout === "string") {
          // the output went to the terminal live (a detached start has none: it is rendered)
          if (out.timed_out) process.stderr.write(`pyro: command timed out (exit ${out.exit_code})\n`);
          if (out.stdout_truncated || out.stderr_truncated)
            process.stderr.write("pyro: output was truncated\n");
        } else process.stdout.write(`${op.render ? op.render(out) : renderDefault(out)}\n`);
        exitCode = op.exitCode ? op.exitCode(out) : 0;
      } catch (err) {
        exitCode = reportError(err, json);
      }
    },
  });
  return cmd;
}

function buildTree(): CommandDef {
  const root: CommandDef = {
    meta: {
      name: "pyro",
      version: PYRO_VERSION,
      description: "Disposable Linux microVMs and persistent workspaces for coding agents.",
    },
    subCommands: {},
  };
  for (const op of OPERATIONS) {
    let node = root;
    for (const [i, part] of op.cli.entries()) {
      const subs = node.subCommands as Record<string, CommandDef>;
      if (i === op.cli.length - 1) {
        subs[part] = leaf(op);
      } else {
        subs[part] ??= { meta: { name: part, description: `${part} commands` }, subCommands: {} };
        node = subs[part];
      }
    }
  }
  describeGroups(root);
  const subs = root.subCommands as Record<string, CommandDef>;
  subs.mcp = mcpCommand((code) => {
    exitCode = code;
  });
  return root;
}

const GROUPS: Record<string, string> = {
  workspace:
    "Persistent workspaces: create one, then exec, edit files, diff, snapshot, reset, export, run shells and services.",
  env: "Environments, the guest images workspaces boot: list, build, pull, import, save, load, prune.",
  host: "Connect MCP clients (Claude Code, Cursor, ...) to pyro, and check or repair that setup.",
};

/** A group's description (GROUPS, else one that lists its commands: "Sync commands: push."). */
function describeGroups(node: CommandDef): void {
  for (const [name, sub] of Object.entries((node.subCommands ?? {}) as Record<string, CommandDef>)) {
    if (!sub.subCommands) continue;
    describeGroups(sub);
    const names = Object.keys(sub.subCommands as Record<string, CommandDef>).join(", ");
    (sub.meta as { description?: string }).description =
      GROUPS[name] ?? `${name[0]?.toUpperCase()}${name.slice(1)} commands: ${names}.`;
  }
}

/** Find the command a --help (or an incomplete group command) refers to, and its path. */
function walk(root: CommandDef, argv: string[]): { cmd: CommandDef; path: string[] } {
  let cmd = root;
  const path = ["pyro"];
  for (const a of argv) {
    if (a.startsWith("-")) break;
    const next = (cmd.subCommands as Record<string, CommandDef> | undefined)?.[a];
    if (!next) break;
    path.push(a);
    cmd = next;
  }
  return { cmd, path };
}

export async function runCli(argv: string[]): Promise<number> {
  if (argv[0] === "--version" || argv[0] === "-v" || argv[0] === "version") {
    process.stdout.write(`pyro ${PYRO_VERSION}\n`);
    return 0;
  }
  if (argv[0] === "__supervise") {
    const { supervise } = await import("../supervisor/main.ts");
    const id = argv[argv.indexOf("--id") + 1] as string;
    await supervise(makeCtx().home, id, { resume: argv.includes("--resume") });
    return -1;
  }
  const root = buildTree();
  const { cmd, path } = walk(root, argv);
  const usage = () => formatHelp({ path, cmd }, helpWidth());
  const wantsHelp = argv.includes("--help") || argv.includes("-h");
  const ddIndex = argv.indexOf("--");
  const helpBeforeCommand =
    wantsHelp && (ddIndex < 0 || Math.max(argv.indexOf("--help"), argv.indexOf("-h")) < ddIndex);
  if (argv.length === 0 || (helpBeforeCommand && cmd.subCommands)) {
    process.stdout.write(usage());
    return 0;
  }
  try {
    await runCommand(root, { rawArgs: argv });
  } catch (err) {
    const json = argv.includes("--json");
    const msg = (err as Error).message ?? String(err);
    if ((err as { name?: string }).name === "CLIError") {
      if (cmd.subCommands) process.stderr.write(`${usage()}\n`);
      return reportError(new PyroError("INVALID_INPUT", msg.replace(/\x1b\[[0-9;]*m/g, "")), json);
    }
    return reportError(err, json);
  }
  return exitCode;
}
