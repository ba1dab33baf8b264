/**
 * `pyro mcp serve`: the MCP server's command line (not an operation: it serves them).
 * The profile and mode, and the project, are resolved here once, before serving: a mode
 * implies its profile (a contradicting --profile is a usage error, src/mcp/modes.ts); the
 * project is --project-path, --repo-url [--repo-ref] (cloned under PYRO_HOME), none with
 * --no-project-source, or else the git checkout the server is started in, if any.
 */
import { parseArgs } from "node:util";
import { type CommandDef, defineCommand } from "citty";
import type { Project } from "../manager/project.ts";
import { MODE_NAMES, MODES } from "../mcp/modes.ts";
import { PyroError } from "../protocol/errors.ts";
import { formatHelp, helpWidth } from "./help.ts";

interface ProjectFlags {
  "project-path"?: string;
  "repo-url"?: string;
  "repo-ref"?: string;
  "no-project-source"?: boolean;
}

/** The project the flags name (see the header); at most one source may be given. */
async function projectFromFlags(values: ProjectFlags): Promise<Project | null> {
  const given = (["project-path", "repo-url", "no-project-source"] as const).filter(
    (k) => values[k] !== undefined,
  );
  if (given.length > 1)
    throw new PyroError(
      "INVALID_INPUT",
      `mcp serve: give at most one of --project-path, --repo-url, --no-project-source (got --${given.join(", --")})`,
    );
  if (values["repo-ref"] !== undefined && values["repo-url"] === undefined)
    throw new PyroError("INVALID_INPUT", "mcp serve: --repo-ref needs --repo-url");
  if (values["no-project-source"]) return null;
  const { resolveProject } = await import("../manager/project.ts");
  const { pyroHome } = await import("../manager/paths.ts");
  const url = values["repo-url"];
  const path = values["project-path"];
  return resolveProject(
    pyroHome(process.env),
    url !== undefined
      ? { repo_url: url, repo_ref: values["repo-ref"] }
      : { path: path ?? process.cwd(), required: path !== undefined },
  );
}

export function mcpCommand(setExitCode: (code: number) => void): CommandDef {
  const mcp: CommandDef = {
    meta: { name: "mcp", description: "Model Context Protocol server" },
    subCommands: {},
  };
  const serve: CommandDef = defineCommand({
    meta: { name: "serve", description: "Serve pyro's tools over MCP on stdio (or HTTP with --http)." },
    args: {
      profile: {
        type: "string",
        description: "Tool profile: vm-run | workspace-core (default) | workspace-full.",
      },
      "allow-host-path": {
        type: "string",
        description:
          "Let the model read host paths under DIR (DIR:rw: also export into it). Repeatable. Nothing else on the host is reachable.",
      },
      "export-dir": {
        type: "string",
        description: "Where workspace_export writes (default: $PYRO_HOME/exports, created 0700).",
      },
      "allow-host-compat": {
        type: "boolean",
        description:
          "Let the model pass allow_host_compat: commands may then run on this host WITHOUT a VM (no isolation). Off by default.",
      },
      mode: {
        type: "string",
        description: `Task mode (implies its profile): ${MODE_NAMES.map((m) => `${m} (${MODES[m].summary})`).join(" | ")}.`,
      },
      "project-path": {
        type: "string",
        description:
          "Seed workspace_create (when seed_path is omitted) with the git-tracked files of the checkout containing PATH (default: the checkout the server starts in, if any).",
      },
      "repo-url": {
        type: "string",
        description: "Like --project-path, for a repository cloned (or fetched) into $PYRO_HOME/projects.",
      },
      "repo-ref": {
        type: "string",
        description: "Branch, tag or commit of --repo-url to check out (default: the remote's HEAD).",
      },
      "no-project-source": {
        type: "boolean",
        description: "No project: workspace_create starts empty unless seed_path is given.",
      },
      http: {
        type: "string",
        description:
          "Serve over streamable HTTP at http://ADDR:PORT/mcp instead of stdio (loopback ADDR only; bearer token required).",
      },
      listen: {
        type: "string",
        description: "Like --http, on any ADDR (reachable from other machines: prints a warning).",
      },
      "token-file": {
        type: "string",
        description:
          "HTTP bearer token file, mode 0600 (default: $PYRO_HOME/mcp-http.token, generated once).",
      },
    },
    async run({ rawArgs }) {
      if (rawArgs.includes("--help") || rawArgs.includes("-h")) {
        process.stdout.write(formatHelp({ path: ["pyro", "mcp", "serve"], cmd: serve }, helpWidth()));
        return;
      }
      const { serveStdio } = await import("../mcp/server.ts");
      let values: {
        profile?: string;
        "allow-host-path"?: string[];
        "export-dir"?: string;
        "allow-host-compat"?: boolean;
        mode?: string;
        "project-path"?: string;
        "repo-url"?: string;
        "repo-ref"?: string;
        "no-project-source"?: boolean;
        http?: string;
        listen?: string;
        "token-file"?: string;
      };
      try {
        ({ values } = parseArgs({
          args: rawArgs,
          options: {
            profile: { type: "string" },
            "allow-host-path": { type: "string", multiple: true },
            "export-dir": { type: "string" },
            "allow-host-compat": { type: "boolean" },
            mode: { type: "string" },
            "project-path": { type: "string" },
            "repo-url": { type: "string" },
            "repo-ref": { type: "string" },
            "no-project-source": { type: "boolean" },
            http: { type: "string" },
            listen: { type: "string" },
            "token-file": { type: "string" },
          },
          strict: true,
          allowPositionals: false,
        }));
      } catch (err) {
        throw new PyroError("INVALID_INPUT", `mcp serve: ${(err as Error).message}`);
      }
      const { resolveProfileMode } = await import("../mcp/modes.ts");
      const { profile, mode } = resolveProfileMode(values.profile, values.mode);
      const project = await projectFromFlags(values);
      const options = {
        profile,
        mode,
        project,
        roots: values["allow-host-path"] ?? [],
        exportDir: values["export-dir"],
        allowHostCompat: values["allow-host-compat"] === true,
      };
      const { http, listen, "token-file": tokenFile } = values;
      if (http === undefined && listen === undefined && tokenFile !== undefined)
        throw new PyroError("INVALID_INPUT", "mcp serve: --token-file needs --http or --listen");
      if (http !== undefined || listen !== undefined)
        await (await import("../mcp/http.ts")).serveHttp(options, { http, listen, tokenFile });
      else await serveStdio(options);
      setExitCode(-1); // keep serving: main must not exit
    },
  }) as CommandDef;
  (mcp.subCommands as Record<string, CommandDef>).serve = serve;
  return mcp;
}
