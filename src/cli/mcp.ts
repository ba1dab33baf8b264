/**
 * `pyro mcp serve`: the MCP server's command line (not an operation: it serves them).
 * Flags the contract names but pyro does not build yet are refused, never silently ignored.
 */
import { parseArgs } from "node:util";
import { type CommandDef, defineCommand, renderUsage } from "citty";
import { PyroError } from "../protocol/errors.ts";

/** `mcp serve` flags of the contract that are not built yet: refused, never silently ignored. */
const NOT_YET = ["--mode", "--project-path", "--repo-url", "--repo-ref", "--no-project-source"];

export function mcpCommand(plain: (text: string) => string, setExitCode: (code: number) => void): CommandDef {
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
        process.stdout.write(`${plain(await renderUsage(serve, mcp))}\n`);
        return;
      }
      const { serveStdio } = await import("../mcp/server.ts");
      let values: {
        profile?: string;
        "allow-host-path"?: string[];
        "export-dir"?: string;
        "allow-host-compat"?: boolean;
        http?: string;
        listen?: string;
        "token-file"?: string;
      };
      const later = rawArgs.find((a) => NOT_YET.some((f) => a === f || a.startsWith(`${f}=`)));
      if (later)
        throw new PyroError(
          "INVALID_INPUT",
          `mcp serve: ${later.split("=")[0]} is not available in this version`,
          {
            hint: "choose the tool set with --profile; grant host directories with --allow-host-path",
          },
        );
      try {
        ({ values } = parseArgs({
          args: rawArgs,
          options: {
            profile: { type: "string", default: "workspace-core" },
            "allow-host-path": { type: "string", multiple: true },
            "export-dir": { type: "string" },
            "allow-host-compat": { type: "boolean" },
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
      const profile = values.profile as string;
      if (!["vm-run", "workspace-core", "workspace-full"].includes(profile)) {
        throw new PyroError("INVALID_INPUT", `unknown profile "${profile}"`);
      }
      const options = {
        profile: profile as "vm-run" | "workspace-core" | "workspace-full",
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
