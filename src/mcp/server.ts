/**
 * `pyro mcp serve`: a stdio MCP server. Registered through the low-level Server (tools/list,
 * tools/call) because the operations' schemas are valibot, not zod. Results are
 * structuredContent plus a short text; failures are isError results carrying {code, message}.
 */

import { join } from "node:path";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { enableConnectionPooling } from "../manager/client.ts";
import { makeCtx } from "../manager/context.ts";
import { pyroHome } from "../manager/paths.ts";
import { invoke } from "../operations/invoke.ts";
import type { Profile } from "../operations/types.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";
import { PYRO_VERSION } from "../protocol/version.ts";
import { HostPathPolicy, type HostRoot } from "./host-paths.ts";
import { clampInput, fitBudget, renderText, toolErrorResult } from "./results.ts";
import { StdioTransport } from "./stdio.ts";
import { toolDefinition, toolsFor } from "./tools.ts";

export interface ServerOptions {
  profile?: Profile;
  env?: Record<string, string | undefined>;
  /**
   * Host directories the model may reach (`DIR`, `DIR:ro`, `DIR:rw`, or {path, access});
   * nothing else on the host is reachable over MCP. Relative reads resolve against the
   * first one: project-aware startup puts the project root first here.
   */
  roots?: Array<HostRoot | string>;
  /** Where exports go (default `<PYRO_HOME>/exports`, created 0700); relative outputs resolve here. */
  exportDir?: string;
  /**
   * Honour `allow_host_compat` from the model (commands then run on the host with no
   * isolation). Off by default: the user opts in with `pyro mcp serve --allow-host-compat`.
   */
  allowHostCompat?: boolean;
}

export function createServer(opts: ServerOptions = {}): Server {
  const profile = opts.profile ?? "workspace-core";
  const tools = toolsFor(profile);
  const env = opts.env ?? process.env;
  const home = pyroHome(env);
  const hostPaths = new HostPathPolicy({
    roots: opts.roots ?? [],
    exportDir: opts.exportDir ?? join(home, "exports"),
    home,
  });
  enableConnectionPooling();
  const server = new Server({ name: "pyro", version: PYRO_VERSION }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: tools.map(toolDefinition) }));
  server.setRequestHandler(CallToolRequestSchema, async (req) => {
    const op = tools.find((t) => t.name === req.params.name);
    try {
      if (!op)
        throw new PyroError("INVALID_INPUT", `unknown tool "${req.params.name}" in profile ${profile}`);
      const ctx = makeCtx(env, () => {});
      ctx.guardHostWrite = hostPaths.guardWrite;
      const out = fitBudget(
        await invoke(op, ctx, req.params.arguments ?? {}, {
          prepare: (input) => {
            if (input.allow_host_compat === true && !opts.allowHostCompat)
              throw new PyroError(
                "HOST_COMPAT_NOT_ALLOWED",
                "running without a VM (allow_host_compat) is not enabled for this MCP server",
                { hint: "the user can allow it with `pyro mcp serve --allow-host-compat`" },
              );
            return clampInput(hostPaths.check(op, input));
          },
        }),
      );
      return { content: [{ type: "text", text: renderText(out) }], structuredContent: out };
    } catch (err) {
      // The model sees workspace paths, never host paths: the whole error is scrubbed.
      const shape = hostPaths.scrubValue(toPyroError(err).toJSON()) as ReturnType<PyroError["toJSON"]>;
      return toolErrorResult(shape);
    }
  });
  return server;
}

export async function serveStdio(opts: ServerOptions): Promise<void> {
  const server = createServer(opts);
  const transport = new StdioTransport({ toolError: (e) => toolErrorResult(e.toJSON()) });
  // exit once every answer written has left (stdout to a pipe is asynchronous; see main.ts)
  transport.onclose = () => {
    process.stdout.once("error", () => process.exit(0));
    process.stdout.end(() => process.exit(0));
  };
  await server.connect(transport);
}
