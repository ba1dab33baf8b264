/**
 * Claude Code (https://code.claude.com/docs/en/mcp). Registration: `claude mcp add --scope user
 * NAME -- COMMAND ARGS...`. Claude Code keeps user-scope servers in `~/.claude.json` under
 * `mcpServers`, and local-scope ones (the default scope) in the same file under
 * `projects["/abs/dir"].mcpServers`; with CLAUDE_CONFIG_DIR set the file is
 * `$CLAUDE_CONFIG_DIR/.claude.json` (observed with Claude Code 2.1.332). Entries are `{type: "stdio", command, args, env}`
 * (the shape `claude mcp add` writes, checked against Claude Code 2.1.332).
 */
import { join } from "node:path";
import type { Env } from "../../base/paths.ts";
import { getObject, readJsonc, setJsonValue } from "./json-file.ts";
import { type Found, type HostModule, type Registration, SERVER_NAME } from "./types.ts";

const PROJECT = "project:";

function configFile(env: Env): string {
  return env.CLAUDE_CONFIG_DIR
    ? join(env.CLAUDE_CONFIG_DIR, ".claude.json")
    : join(env.HOME ?? "/", ".claude.json");
}

function registrationOf(entry: unknown): Registration | null {
  const e = entry as { command?: unknown; args?: unknown } | undefined;
  if (!e || typeof e.command !== "string") return null;
  const args = Array.isArray(e.args) ? e.args.filter((a): a is string => typeof a === "string") : [];
  return { command: e.command, args };
}

export const claudeCode: HostModule = {
  id: "claude-code",
  cli: "claude",
  docs: ["https://code.claude.com/docs/en/mcp"],
  configFiles: (env) => [configFile(env)],
  userConfigFile: configFile,
  find(text, path) {
    const root = readJsonc(text, path);
    const found: Found[] = [];
    const user = registrationOf(getObject(root, ["mcpServers"])?.[SERVER_NAME]);
    if (user) found.push({ path, scope: "user", registration: user });
    for (const [dir, project] of Object.entries(getObject(root, ["projects"]) ?? {})) {
      const reg = registrationOf(getObject({ p: project }, ["p", "mcpServers"])?.[SERVER_NAME]);
      if (reg) found.push({ path, scope: `${PROJECT}${dir}`, registration: reg });
    }
    return found;
  },
  render(text, reg, path, scope = "user") {
    const keys = scope.startsWith(PROJECT)
      ? ["projects", scope.slice(PROJECT.length), "mcpServers", SERVER_NAME]
      : ["mcpServers", SERVER_NAME];
    // an existing entry keeps its other fields (env, ...); a new one is what `claude mcp add` writes
    const entry = (old: Record<string, unknown> | null) => ({
      type: "stdio",
      ...old,
      command: reg.command,
      args: reg.args,
      env: old?.env ?? {},
    });
    return setJsonValue(text, keys, entry, path);
  },
  addCommand: (reg) => [
    "claude",
    "mcp",
    "add",
    "--scope",
    "user",
    SERVER_NAME,
    "--",
    reg.command,
    ...reg.args,
  ],
  removeCommand: () => ["claude", "mcp", "remove", "--scope", "user", SERVER_NAME],
};
