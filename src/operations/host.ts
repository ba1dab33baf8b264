/**
 * `pyro host ...`: connect a chat client (Claude Code, Codex, OpenCode) to pyro's MCP server,
 * check its registrations and repair stale ones. The work is src/manager/host-onramps/.
 *
 * None of these is an MCP tool: they read and rewrite the user's chat-client configuration
 * in their home directory, and a model must not change which servers its own client starts.
 */
import * as v from "valibot";
import {
  connectHost,
  HOST_IDS,
  hostDoctor,
  printHostConfig,
  repairHost,
} from "../manager/host-onramps/index.ts";
import { selfPathCommand } from "../manager/self.ts";
import { ERROR_EXIT_CODES } from "../protocol/errors.ts";
import * as out from "./outputs.ts";
import { renderTable } from "./render.ts";
import { defineOperation } from "./types.ts";

const NOT_OVER_MCP =
  "it reads and rewrites the user's chat-client configuration (files in their home directory); a model must not change which servers its own client starts.";

/** The modes and profiles of `pyro mcp serve` (contract), passed through to the registration. */
const serveFlags = {
  mode: v.optional(
    v.pipe(
      v.picklist(["repro-fix", "inspect", "cold-start", "review-eval"]),
      v.description("Register `pyro mcp serve --mode M` (repro-fix | inspect | cold-start | review-eval)."),
    ),
  ),
  profile: v.optional(
    v.pipe(
      v.picklist(["vm-run", "workspace-core", "workspace-full"]),
      v.description("Register `pyro mcp serve --profile P` (vm-run | workspace-core | workspace-full)."),
    ),
  ),
};

const annotations = {
  readOnlyHint: false,
  destructiveHint: false,
  idempotentHint: true,
  openWorldHint: false,
};

export const hostConnectOp = defineOperation({
  name: "host_connect",
  sdk: "connectHost",
  sdkArgs: ["host"],
  cli: ["host", "connect"],
  positionals: ["host"],
  summary: "Register pyro's MCP server with Claude Code or Codex.",
  description:
    "Register this pyro (`<absolute path> mcp serve [--profile P] [--mode M]`) with a chat client through the client's own command (`claude mcp add --scope user pyro -- ...`, `codex mcp add pyro -- ...`). When the client's CLI is on PATH the command is run; otherwise (or with --print) it is printed to run by hand.",
  input: v.strictObject({
    host: v.pipe(
      v.picklist(["claude-code", "codex"]),
      v.description("The chat client: claude-code | codex."),
    ),
    ...serveFlags,
    print: v.optional(
      v.pipe(v.boolean(), v.description("Print the registration command instead of running it.")),
    ),
  }),
  output: out.hostConnected,
  mutates: false,
  annotations,
  profiles: [],
  notOverMcp: NOT_OVER_MCP,
  examples: ["pyro host connect claude-code", "pyro host connect codex --mode repro-fix --print"],
  run: (ctx, input) => connectHost(ctx, input.host, input),
  render: (o) =>
    o.ran
      ? `registered pyro with ${o.host} (${o.config_file})\n$ ${o.command_line}${o.output ? `\n${o.output}` : ""}`
      : `${o.cli === null ? `${o.host}'s CLI (${o.command[0]}) is not on PATH; register pyro with:` : "register pyro with:"}\n${o.command_line}`,
});

export const hostPrintConfigOp = defineOperation({
  name: "host_print_config",
  sdk: "printHostConfig",
  sdkArgs: ["host"],
  cli: ["host", "print-config"],
  positionals: ["host"],
  summary: "Print (or merge into a file) a chat client's config entry for pyro.",
  description:
    "The client's config with pyro's MCP server entry, in the client's documented format: OpenCode's JSON (`mcp.pyro`: type local, command array, enabled), Claude Code's `.mcp.json`-style `mcpServers.pyro`, Codex's `[mcp_servers.pyro]` TOML table. Without --output it is printed; with --output the entry is merged into that file (created if missing): every other key and server is kept.",
  input: v.strictObject({
    host: v.pipe(v.picklist(HOST_IDS), v.description("The chat client: opencode | claude-code | codex.")),
    ...serveFlags,
    output: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.description("Merge pyro's entry into this config file (created if missing)."),
      ),
    ),
  }),
  output: out.hostConfigPrinted,
  mutates: false,
  annotations,
  profiles: [],
  notOverMcp: NOT_OVER_MCP,
  hostPaths: { output: "write" },
  examples: [
    "pyro host print-config opencode",
    "pyro host print-config opencode --output ~/.config/opencode/opencode.json",
  ],
  run: async (_ctx, input) => printHostConfig(input.host, input),
  render: (o) => (o.output ? `${o.merged ? "merged pyro into" : "wrote"} ${o.output}` : o.text.trimEnd()),
});

export const hostDoctorOp = defineOperation({
  name: "host_doctor",
  sdk: "hostDoctor",
  cli: ["host", "doctor"],
  summary: "Check each installed chat client's registration of pyro.",
  description:
    "For Claude Code, Codex and OpenCode: whether the client is installed (CLI on PATH or a config file), where it registers pyro (read from its config files), and whether the registered executable exists and is this pyro (or at least a pyro that answers --version). A registration pointing at a missing executable or at something that is not pyro is stale: `pyro host repair HOST` fixes it.",
  input: v.strictObject({}),
  output: out.hostDoctorResult,
  mutates: false,
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: [],
  notOverMcp: NOT_OVER_MCP,
  run: async (ctx) => {
    const hosts = await hostDoctor(ctx);
    const ok = hosts.every((h) => h.status !== "stale" && h.status !== "unreadable");
    return { ok, pyro: selfPathCommand(), hosts };
  },
  render: (o) =>
    `${renderTable([
      ["HOST", "STATUS", "DETAIL"],
      ...o.hosts.map((h) => [h.host, h.status, h.detail + (h.hint ? `  → ${h.hint}` : "")]),
    ])}\n${o.ok ? "no stale registrations" : "some registrations are stale"}`,
  exitCode: (o) => (o.ok ? 0 : ERROR_EXIT_CODES.FILE_NOT_FOUND),
});

export const hostRepairOp = defineOperation({
  name: "host_repair",
  sdk: "repairHost",
  sdkArgs: ["host"],
  cli: ["host", "repair"],
  positionals: ["host"],
  summary: "Point a chat client's stale pyro registration at this pyro.",
  description:
    "Rewrite every registration of pyro in the client's config files that does not start this pyro (missing executable, not pyro, another pyro) so it names this pyro by absolute path, keeping its `mcp serve` flags and the entry's other fields; the rest of the file is untouched.",
  input: v.strictObject({
    host: v.pipe(v.picklist(HOST_IDS), v.description("The chat client: claude-code | codex | opencode.")),
  }),
  output: out.hostRepaired,
  mutates: false,
  annotations,
  profiles: [],
  notOverMcp: NOT_OVER_MCP,
  run: async (ctx, input) => ({ host: input.host, ...(await repairHost(ctx, input.host)) }),
  render: (o) =>
    o.repaired.length === 0
      ? `${o.host}: every registration already starts this pyro`
      : o.repaired
          .map((r) => `repaired ${r.path} (${r.scope}): ${r.before.command} → ${r.after.command}`)
          .join("\n"),
});
