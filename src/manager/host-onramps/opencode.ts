/**
 * OpenCode (https://opencode.ai/docs/mcp-servers/, https://opencode.ai/docs/config/). MCP
 * servers live under the config's `mcp` key: `{type: "local", command: [argv...], enabled}`.
 * Global config: `$XDG_CONFIG_HOME/opencode/opencode.json` or `opencode.jsonc` (default
 * `~/.config/opencode`, both read and merged, .jsonc last); OPENCODE_CONFIG names one more
 * file read after them. JSONC is read; a file with comments is never rewritten (json-file.ts).
 */
import { join } from "node:path";
import type { Env } from "../../base/paths.ts";
import { getObject, readJsonc, setJsonValue } from "./json-file.ts";
import { type HostModule, SERVER_NAME } from "./types.ts";

const SCHEMA = "https://opencode.ai/config.json";

function configDir(env: Env): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME ?? "/", ".config"), "opencode");
}

export const opencode: HostModule = {
  id: "opencode",
  cli: "opencode",
  docs: ["https://opencode.ai/docs/mcp-servers/", "https://opencode.ai/docs/config/"],
  configFiles: (env) => [
    join(configDir(env), "opencode.json"),
    join(configDir(env), "opencode.jsonc"),
    ...(env.OPENCODE_CONFIG ? [env.OPENCODE_CONFIG] : []),
  ],
  userConfigFile: (env) => join(configDir(env), "opencode.json"),
  find(text, path) {
    const entry = getObject(readJsonc(text, path), ["mcp", SERVER_NAME]);
    const argv = Array.isArray(entry?.command)
      ? entry.command.filter((a): a is string => typeof a === "string")
      : [];
    const [command, ...args] = argv;
    return command === undefined ? [] : [{ path, scope: "user", registration: { command, args } }];
  },
  render(text, reg, path) {
    // an existing entry keeps its other fields (environment, timeout, ...)
    const entry = (old: Record<string, unknown> | null) => ({
      ...old,
      type: "local",
      command: [reg.command, ...reg.args],
      enabled: true,
    });
    return setJsonValue(text, ["mcp", SERVER_NAME], entry, path, { $schema: SCHEMA });
  },
};
