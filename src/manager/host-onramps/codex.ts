/**
 * Codex (https://developers.openai.com/codex/mcp, openai/codex docs/config.md). Registration:
 * `codex mcp add NAME -- COMMAND ARGS...`, which writes a `[mcp_servers.NAME]` table with
 * `command` and `args` (and `env` when given) to `$CODEX_HOME/config.toml` (default
 * `~/.codex/config.toml`), in the exact layout render() produces (checked against Codex 0.171.0).
 *
 * Rewriting is a text edit, so the user's comments and other tables survive: the lines of
 * pyro's table (and its sub-tables such as `[mcp_servers.pyro.env]`) are replaced in place,
 * or the table is appended. The result is parsed again and must hold exactly pyro's new entry;
 * an entry written another way (dotted keys, an inline table) is refused, not guessed at.
 */
import { join } from "node:path";
import type { Env } from "../../base/paths.ts";
import { PyroError } from "../../protocol/errors.ts";
import { type HostModule, type Registration, SERVER_NAME } from "./types.ts";

function configFile(env: Env): string {
  return join(env.CODEX_HOME || join(env.HOME ?? "/", ".codex"), "config.toml");
}

function parse(text: string, path: string): Record<string, unknown> {
  try {
    return Bun.TOML.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new PyroError("INVALID_INPUT", `${path} is not valid TOML: ${(err as Error).message}`, {
      details: { path },
      hint: "fix the file (or move it aside) and run the command again",
    });
  }
}

function pyroEntry(doc: Record<string, unknown>): Record<string, unknown> | undefined {
  const servers = doc.mcp_servers as Record<string, unknown> | undefined;
  return servers?.[SERVER_NAME] as Record<string, unknown> | undefined;
}

/** pyro's table as codex writes it; `entry` keeps the other fields of an existing entry. */
export function renderTable(reg: Registration, entry: Record<string, unknown> = {}): string {
  const merged = { ...entry, command: reg.command, args: reg.args };
  return Bun.TOML.stringify({ mcp_servers: { [SERVER_NAME]: merged } });
}

const COMMENT_OR_BLANK = /^\s*(#.*)?$/;
const HEADER = /^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$/;
/** `mcp_servers.pyro` or one of its sub-tables, quoted or bare. */
const isPyroTable = (name: string) =>
  new RegExp(`^mcp_servers\\s*\\.\\s*("${SERVER_NAME}"|'${SERVER_NAME}'|${SERVER_NAME})\\s*(\\.|$)`).test(
    name,
  );

export const codex: HostModule = {
  id: "codex",
  cli: "codex",
  docs: [
    "https://developers.openai.com/codex/mcp",
    "https://github.com/openai/codex/blob/main/docs/config.md",
  ],
  configFiles: (env) => [configFile(env)],
  userConfigFile: configFile,
  find(text, path) {
    const e = pyroEntry(parse(text, path));
    if (!e || typeof e.command !== "string") return [];
    const args = Array.isArray(e.args) ? e.args.filter((a): a is string => typeof a === "string") : [];
    return [{ path, scope: "user", registration: { command: e.command, args } }];
  },
  render(text, reg, path) {
    const old = text === null ? undefined : pyroEntry(parse(text, path));
    const table = renderTable(reg, old);
    const kept: string[] = [];
    let at = -1; // where pyro's table stood
    let skipped: string[] | null = null; // lines of pyro's tables being dropped
    /** Comments and blank lines that end pyro's table belong to what follows: keep them. */
    const endSkip = () => {
      let k = skipped?.length ?? 0;
      while (k > 0 && COMMENT_OR_BLANK.test(skipped?.[k - 1] as string)) k--;
      kept.push(...(skipped?.slice(k) ?? []));
      skipped = null;
    };
    for (const line of (text ?? "").split("\n")) {
      const h = HEADER.exec(line);
      if (h && isPyroTable(h[1] as string)) {
        if (at < 0) at = kept.length;
        skipped = [];
        continue;
      }
      if (h && skipped) endSkip();
      if (skipped) skipped.push(line);
      else kept.push(line);
    }
    if (skipped) endSkip();
    if (at < 0) {
      while (kept.length > 0 && kept.at(-1) === "") kept.pop();
      at = kept.length;
    }
    const block = table.trimEnd().split("\n");
    if (at > 0 && kept[at - 1] !== "") block.unshift("");
    if (at < kept.length && kept[at] !== "") block.push("");
    kept.splice(at, 0, ...block);
    let out = kept.join("\n");
    if (!out.endsWith("\n")) out += "\n";
    let entry: Record<string, unknown> | undefined;
    try {
      entry = pyroEntry(Bun.TOML.parse(out) as Record<string, unknown>);
    } catch {}
    if (entry?.command !== reg.command || JSON.stringify(entry?.args) !== JSON.stringify(reg.args))
      throw new PyroError(
        "INVALID_INPUT",
        `${path} defines mcp_servers.${SERVER_NAME} in a form pyro does not rewrite (dotted keys or an inline table)`,
        {
          details: { path },
          hint: `remove it (\`codex mcp remove ${SERVER_NAME}\`) and run the command again`,
        },
      );
    return out;
  },
  addCommand: (reg) => ["codex", "mcp", "add", SERVER_NAME, "--", reg.command, ...reg.args],
};
