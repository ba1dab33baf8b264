/**
 * `pyro mcp serve`: a stdio MCP server. Registered through the low-level Server (tools/list,
 * tools/call) because the operations' schemas are valibot, not zod. Results are
 * structuredContent plus a short text; failures are isError results carrying {code, message}.
 *
 * The tool set is the profile's, or the mode's (src/mcp/modes.ts). With a project (resolved
 * once at startup by resolveProject, src/manager/project.ts) the project root is the first
 * granted host root (read-only) and workspace_create without seed_path seeds its git-tracked
 * files: the prepare step sets the create input's `project`, a field of the manager's input
 * that the tool's schema does not have (so a model cannot name a project itself). The
 * initialize result's `instructions` say which project it is, or that there is none.
 */

import { join } from "node:path";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  type ServerNotification,
} from "@modelcontextprotocol/sdk/types.js";
import type { ProgressSink } from "../base/progress.ts";
import { enableConnectionPooling } from "../manager/client.ts";
import { makeCtx } from "../manager/context.ts";
import { pyroHome } from "../manager/paths.ts";
import type { Project } from "../manager/project.ts";
import { invoke } from "../operations/invoke.ts";
import type { Profile } from "../operations/types.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";
import { PYRO_VERSION } from "../protocol/version.ts";
import { HostPathPolicy, type HostRoot } from "./host-paths.ts";
import { BASE_INSTRUCTIONS, MODES, type Mode, resolveProfileMode } from "./modes.ts";
import { clampInput, fitBudget, renderText, toolErrorResult } from "./results.ts";
import { StdioTransport } from "./stdio.ts";
import { toolDefinition, toolsFor } from "./tools.ts";

export interface ServerOptions {
  profile?: Profile;
  /** A task mode (src/mcp/modes.ts): implies its profile; a different `profile` is INVALID_INPUT. */
  mode?: Mode;
  /**
   * The project whose git-tracked files seed workspace_create when seed_path is absent
   * (from resolveProject in src/manager/project.ts); its root becomes the first granted
   * root, read-only. None: workspaces start empty, and the instructions say so.
   */
  project?: Project | null;
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
  const { profile, mode } = resolveProfileMode(opts.profile, opts.mode);
  const tools = toolsFor(profile, mode);
  const project = opts.project ?? null;
  const env = opts.env ?? process.env;
  const home = pyroHome(env);
  const hostPaths = new HostPathPolicy({
    roots: [...(project ? [{ path: project.root, access: "ro" as const }] : []), ...(opts.roots ?? [])],
    exportDir: opts.exportDir ?? join(home, "exports"),
    home,
  });
  enableConnectionPooling();
  const server = new Server(
    { name: "pyro", version: PYRO_VERSION },
    { capabilities: { tools: {} }, instructions: instructionsFor(mode, project) },
  );
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: tools.map(toolDefinition) }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const op = tools.find((t) => t.name === req.params.name);
    try {
      if (!op)
        throw new PyroError(
          "INVALID_INPUT",
          `unknown tool "${req.params.name}" in ${mode ? `mode ${mode}` : `profile ${profile}`}`,
        );
      const ctx = makeCtx(env, progressNotifier(req.params._meta?.progressToken, extra.sendNotification));
      ctx.guardHostWrite = hostPaths.guardWrite;
      // text_budget_chars shapes the text below; the operation never sees it (src/mcp/tools.ts)
      let render: { budget?: number; input: Record<string, unknown> } = { input: {} };
      const out = fitBudget(
        await invoke(op, ctx, req.params.arguments ?? {}, {
          prepare: ({ text_budget_chars: budget, ...input }) => {
            render = { budget: budget as number | undefined, input };
            if (input.allow_host_compat === true && !opts.allowHostCompat)
              throw new PyroError(
                "HOST_COMPAT_NOT_ALLOWED",
                "running without a VM (allow_host_compat) is not enabled for this MCP server",
                { hint: "the user can allow it with `pyro mcp serve --allow-host-compat`" },
              );
            const checked = clampInput(hostPaths.check(op, input));
            if (op.name === "workspace_create" && checked.seed_path === undefined && project)
              return { ...checked, project };
            return checked;
          },
        }),
        render.budget,
      );
      return { content: [{ type: "text", text: renderText(out, render) }], structuredContent: out };
    } catch (err) {
      // The model sees workspace paths, never host paths: the whole error is scrubbed.
      const shape = hostPaths.scrubValue(toPyroError(err).toJSON()) as ReturnType<PyroError["toJSON"]>;
      return toolErrorResult(shape);
    }
  });
  return server;
}

/**
 * The progress sink of one tool call: `notifications/progress` to the client when its request
 * carries a progressToken (else nothing). `progress` counts the reports (it must increase,
 * and the steps of one call have different totals, so no `total` is sent); `message` is the
 * report's line, which names the step and, where known, how far it is ("12.0 MiB / 48.0 MiB").
 */
function progressNotifier(
  token: string | number | undefined,
  send: (n: ServerNotification) => Promise<void>,
): ProgressSink {
  if (token === undefined) return () => {};
  let n = 0;
  return (line) => {
    n += 1;
    send({
      method: "notifications/progress",
      params: { progressToken: token, progress: n, message: line },
    }).catch(() => {});
  };
}

/** The initialize result's instructions: what pyro is, the mode's task, and the project (or none). */
export function instructionsFor(mode: Mode | undefined, project: Project | null): string {
  const about = project
    ? `Project: ${project.root === project.origin ? `the git checkout at ${project.origin}` : `${project.origin}, cloned for this server`}. workspace_create without seed_path seeds /workspace with the project's git-tracked files as they are in its working tree (workspace_seed.origin_kind: project, origin_ref: where@commit); the project is readable as a granted host path.`
    : "No project: this server has no project source (it was started outside any git checkout, or with --no-project-source), so workspace_create starts with an empty /workspace unless seed_path names a host directory or archive under a granted root.";
  return [BASE_INSTRUCTIONS, mode ? MODES[mode].instructions.trim() : null, about]
    .filter((x) => x !== null)
    .join("\n\n");
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
