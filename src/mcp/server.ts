/**
 * `pyro mcp serve`: a stdio MCP server. Registered through the low-level Server (tools/list,
 * tools/call) because the operations' schemas are valibot, not zod. Results are
 * structuredContent plus a short text; failures are isError results carrying {code, message}.
 */
import { join } from "node:path";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { enableConnectionPooling } from "../manager/client.ts";
import { makeCtx } from "../manager/context.ts";
import { pyroHome } from "../manager/paths.ts";
import { parseInput } from "../operations/invoke.ts";
import type { Profile } from "../operations/types.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";
import { PYRO_VERSION } from "../protocol/version.ts";
import { HostPathPolicy, type HostRoot } from "./host-paths.ts";
import { toolDefinition, toolsFor } from "./tools.ts";

function summarize(out: Record<string, unknown>): string {
  if ("exit_code" in out) {
    const parts = [`exit_code: ${out.exit_code}${out.timed_out ? " (timed out)" : ""}`];
    if (out.stdout) parts.push(`stdout:\n${out.stdout}`);
    if (out.stderr) parts.push(`stderr:\n${out.stderr}`);
    return parts.join("\n");
  }
  return JSON.stringify(out, null, 2);
}

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
      const input = hostPaths.check(op, parseInput(op, req.params.arguments ?? {}));
      const ctx = makeCtx(env, () => {});
      ctx.guardHostWrite = hostPaths.guardWrite;
      const out = await op.run(ctx, input);
      return { content: [{ type: "text", text: summarize(out) }], structuredContent: out };
    } catch (err) {
      // The model sees workspace paths, never host paths: the whole error is scrubbed.
      const shape = hostPaths.scrubValue(toPyroError(err).toJSON()) as ReturnType<PyroError["toJSON"]>;
      return {
        isError: true,
        content: [
          { type: "text", text: `${shape.code}: ${shape.message}${shape.hint ? ` (hint: ${shape.hint})` : ""}` },
        ],
        structuredContent: { error: shape, ...shape },
      };
    }
  });
  return server;
}

export async function serveStdio(opts: ServerOptions): Promise<void> {
  const server = createServer(opts);
  const transport = new StdioServerTransport();
  transport.onclose = () => process.exit(0);
  await server.connect(transport);
  process.stdin.on("end", () => process.exit(0));
}
