/** Workspace lifecycle operations. */
import * as v from "valibot";
import { startDetached } from "../manager/detached.ts";
import { publicRecord } from "../manager/record.ts";
import { countServices } from "../manager/services.ts";
import { countShells } from "../manager/shells.ts";
import {
  createWorkspace,
  DEFAULT_ENVIRONMENT,
  deleteWorkspace,
  execWorkspace,
  listWorkspaces,
  startWorkspace,
  stopWorkspace,
  updateWorkspace,
  workspaceLogs,
  workspaceStatus,
} from "../manager/workspaces.ts";
import { PyroError } from "../protocol/errors.ts";
import { renderDetached } from "./exec.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { renderTable, renderWorkspace } from "./render.ts";
import { defineOperation } from "./types.ts";

const ref = v.strictObject({ workspace_id: f.workspaceRef });
const RO = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

export const createOp = defineOperation({
  name: "workspace_create",
  sdk: "createWorkspace",
  output: out.workspaceRecord,
  mutates: false,
  cliFlags: {
    "id-only": { description: "Print only the new workspace id.", print: (w) => w.workspace_id },
  },
  cli: ["workspace", "create"],
  positionals: ["environment"],
  summary: "Create and start a persistent workspace (a microVM with /workspace).",
  description:
    "Create a persistent workspace: a microVM you can exec in repeatedly, whose /workspace survives between calls. Returns the workspace record (workspace_id, name, state: started, expires_at, backend...). Give it a name and labels to find it again with workspace_list. Delete it with workspace_delete when done; it is deleted automatically when ttl_seconds run out.",
  input: v.strictObject({
    environment: v.optional(f.environment, DEFAULT_ENVIRONMENT),
    seed_path: v.optional(
      v.pipe(
        v.string(),
        v.description(
          "Seed /workspace from this host directory or .tar/.tar.gz/.tgz archive (over MCP: only under a root the server was granted with --allow-host-path).",
        ),
      ),
    ),
    name: v.optional(f.name),
    labels: v.optional(f.labels),
    vcpu_count: v.optional(f.vcpuCount),
    mem_mib: v.optional(f.memMib),
    ttl_seconds: v.optional(f.ttlSeconds),
    network_policy: v.optional(f.networkPolicy),
    allow_hosts: v.optional(f.allowHosts),
    allow_cidrs: v.optional(f.allowCidrs),
    secrets: v.optional(f.secrets),
    auto_pause_after_seconds: v.optional(f.autoPauseAfterSeconds),
    allow_host_compat: v.optional(f.allowHostCompat),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  profiles: ["workspace-core", "workspace-full"],
  hostPaths: { seed_path: "read", secrets: "read" },
  examples: [
    "pyro workspace create debian:12 --name issue-42 --label issue=42",
    "pyro workspace create --id-only",
    "pyro workspace create --name api --secret-file API_TOKEN=./token.txt --secret DB_PASSWORD=hunter2-example",
    "pyro workspace create --allow-host pypi.org --allow-host files.pythonhosted.org --allow-cidr 203.0.113.0/24",
    "pyro workspace create --name dev --auto-pause-after-seconds 300   # paused after 5 idle minutes; the next exec resumes it",
  ],
  run: async (ctx, input) => publicRecord(await createWorkspace(ctx, input)),
  render: (out) => renderWorkspace(out),
});

export const listOp = defineOperation({
  name: "workspace_list",
  sdk: "listWorkspaces",
  output: out.workspaceList,
  mutates: false,
  cli: ["workspace", "list"],
  summary: "List workspaces, most recently active first.",
  description:
    'List all workspaces with their state, name, labels and activity times, most recently active first. Use it to rediscover a workspace by name or label. A workspace whose record is damaged is listed last with state "corrupt" and a corrupt_reason; workspace_delete removes it.',
  input: v.strictObject({
    label: v.optional(
      v.pipe(v.record(v.string(), v.string()), v.description("Only workspaces carrying all these labels.")),
    ),
  }),
  annotations: RO,
  profiles: ["workspace-core", "workspace-full"],
  run: async (ctx, input) => {
    const { records, corrupt } = await listWorkspaces(ctx);
    const want = Object.entries(input.label ?? {});
    // A corrupt record has no trustworthy labels: a label filter leaves it out.
    const listed = (r: (typeof records)[number]) => ({
      ...publicRecord(r),
      services: countServices(ctx.home, r),
    });
    const all = want.length
      ? records.filter((r) => want.every(([k, val]) => r.labels[k] === val)).map(listed)
      : [...records.map(listed), ...corrupt];
    return { workspaces: all, count: all.length };
  },
  render: (out) => {
    const ws = out.workspaces as Record<string, unknown>[];
    if (ws.length === 0) return "no workspaces";
    const table = renderTable([
      ["ID", "NAME", "STATE", "ENV", "BACKEND", "LAST ACTIVITY"],
      ...ws.map((w) => [
        String(w.workspace_id),
        String(w.name ?? "-"),
        String(w.state),
        String(w.environment ?? "-"),
        String(w.backend ?? "-"),
        String(w.last_activity_at ?? "-"),
      ]),
    ]);
    const corrupt = ws.filter((w) => w.state === "corrupt");
    const notes = corrupt.map(
      (w) =>
        `${w.workspace_id}: ${w.corrupt_reason} (\`pyro workspace delete ${w.workspace_id}\` removes it)`,
    );
    return [table, ...notes].join("\n");
  },
});

export const statusOp = defineOperation({
  name: "workspace_status",
  sdk: "workspaceStatus",
  sdkArgs: ["workspace_id"],
  output: out.workspaceStatus,
  mutates: false,
  cli: ["workspace", "status"],
  positionals: ["workspace_id"],
  summary: "Show one workspace's record and state.",
  description:
    "Return the workspace record: state (created|started|stopped and why it stopped), backend, resources, expiry, labels, and `shells`: how many shells it keeps.",
  input: ref,
  annotations: RO,
  profiles: ["workspace-core", "workspace-full"],
  run: async (ctx, input) => {
    const r = await workspaceStatus(ctx, input.workspace_id);
    return { ...publicRecord(r), shells: await countShells(ctx, r), services: countServices(ctx.home, r) };
  },
  render: (out) =>
    `${renderWorkspace(out)}\n  shells:      ${out.shells ?? "unknown (supervisor not answering)"}\n  services:    ${out.services}`,
});

export const updateOp = defineOperation({
  name: "workspace_update",
  sdk: "updateWorkspace",
  sdkArgs: ["workspace_id"],
  output: out.workspaceRecord,
  mutates: true,
  cli: ["workspace", "update"],
  positionals: ["workspace_id"],
  summary: "Rename a workspace, change its labels or its auto-pause.",
  description:
    "Change a workspace's name, labels and auto_pause_after_seconds. labels are merged into the existing ones; clear_labels removes keys; auto_pause_after_seconds 0 turns auto-pause off. A new auto-pause applies to a running workspace at once, counted from its last activity.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    name: v.optional(f.name),
    labels: v.optional(f.labels),
    clear_labels: v.optional(
      v.pipe(v.array(v.string()), v.description("Label keys to remove (CLI: --clear-label K, repeatable).")),
    ),
    auto_pause_after_seconds: v.optional(f.autoPauseAfterSeconds),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-core", "workspace-full"],
  run: async (ctx, input) => publicRecord(await updateWorkspace(ctx, input.workspace_id, input)),
  render: (out) => renderWorkspace(out),
});

export const logsOp = defineOperation({
  name: "workspace_logs",
  sdk: "workspaceLogs",
  sdkArgs: ["workspace_id"],
  output: out.logsResult,
  mutates: false,
  cli: ["workspace", "logs"],
  positionals: ["workspace_id"],
  summary: "Show the command history and console log tail of a workspace.",
  description:
    "Return the workspace's command history (command, exit_code, duration, timed_out) since creation or the last reset, plus the tail of the machine's console log.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    tail_lines: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(0),
        v.description("Console log lines to include (default 200)."),
      ),
    ),
  }),
  annotations: RO,
  profiles: ["workspace-core", "workspace-full"],
  run: (ctx, input) => workspaceLogs(ctx, input.workspace_id, input),
  render: (out) => {
    const entries = out.entries as Array<Record<string, unknown>>;
    const lines = entries.map(
      (e) =>
        `#${e.seq} [exit ${e.exit_code}${e.timed_out ? ", timed out" : ""}, ${e.duration_ms} ms] ${e.command ?? (e.argv as string[]).join(" ")}`,
    );
    return [
      lines.length ? lines.join("\n") : "no commands yet",
      ...refusalLines(out.network_refusals as Array<Record<string, unknown>>),
      "--- console ---",
      String(out.console_tail),
    ].join("\n");
  },
});

function refusalLines(rs: Array<Record<string, unknown>>): string[] {
  if (!rs.length) return [];
  return [
    "--- refused by the egress allow-list ---",
    ...rs.map(
      (r) => `${r.protocol} ${r.destination}${r.port === null ? "" : `:${r.port}`} (${r.packets} packets)`,
    ),
  ];
}

export const execOp = defineOperation({
  name: "workspace_exec",
  sdk: "execWorkspace",
  sdkArgs: ["workspace_id", "command"],
  output: out.workspaceExecOutcome,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "exec"],
  positionals: ["workspace_id"],
  rest: "command",
  summary: "Run a command in a workspace.",
  description:
    "Run a command inside a started workspace (cwd /workspace unless cwd is given) and return exit_code, stdout, stderr, truncation flags and duration. State persists between calls. A timeout is a result (timed_out: true, exit_code 124; the whole process group is killed).",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    command: f.command,
    cwd: v.optional(
      v.pipe(v.string(), v.description("Working directory under /workspace (default /workspace).")),
    ),
    env: v.optional(v.pipe(v.record(v.string(), v.string()), v.description("Extra environment variables."))),
    secret_env: v.optional(f.secretEnv),
    timeout_seconds: v.optional(f.timeoutSeconds),
    max_output_bytes: v.optional(f.maxOutputBytes),
    detach: v.optional(
      v.pipe(
        v.boolean(),
        v.description(
          'Start the command and return at once with its exec_id (state "running"): pyro spools its stdout and stderr outside the guest, and exec_read, exec_wait, exec_kill and exec_list reach it, after every client is gone. No timeout unless timeout_seconds is given; output kept up to max_output_bytes per stream (default 1 GiB when detached).',
        ),
      ),
    ),
    idempotency_key: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.maxLength(200),
        v.description(
          "With detach: a key of your choosing; a start that repeats a key this workspace has seen returns that exec (reused: true) instead of running the command again.",
        ),
      ),
    ),
  }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  profiles: ["workspace-core", "workspace-full"],
  examples: [
    "pyro workspace exec issue-42 -- make test",
    "pyro workspace exec ws_0123456789ab -- sh -c 'ls -la'",
    "pyro workspace exec issue-42 --detach --idempotency-key build-1 -- make -j4",
    "pyro workspace exec api --secret-env API_TOKEN -- sh -c 'curl -sH \"Authorization: Bearer $API_TOKEN\" http://127.0.0.1:8080/'",
  ],
  streamsOutput: true,
  run: (ctx, input) => {
    if (input.detach) return startDetached(ctx, input.workspace_id, input);
    if (input.idempotency_key !== undefined)
      throw new PyroError(
        "INVALID_INPUT",
        "idempotency_key needs detach: true (an attached exec is never replayed)",
      );
    return execWorkspace(ctx, input.workspace_id, input);
  },
  render: (out) => ("exec_id" in out ? renderDetached(out) : ""),
  exitCode: (out) => ("exec_id" in out ? 0 : out.exit_code),
});

export const stopOp = defineOperation({
  name: "workspace_stop",
  sdk: "stopWorkspace",
  sdkArgs: ["workspace_id"],
  output: out.workspaceRecord,
  mutates: true,
  cli: ["workspace", "stop"],
  positionals: ["workspace_id"],
  summary: "Stop a workspace's machine (its files are kept).",
  description:
    "Power the workspace's machine off cleanly; /workspace is kept and workspace_start resumes it.",
  input: ref,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-full"],
  run: async (ctx, input) => publicRecord(await stopWorkspace(ctx, input.workspace_id)),
  render: (out) => renderWorkspace(out),
});

export const startOp = defineOperation({
  name: "workspace_start",
  sdk: "startWorkspace",
  sdkArgs: ["workspace_id"],
  output: out.workspaceRecord,
  mutates: true,
  cli: ["workspace", "start"],
  positionals: ["workspace_id"],
  summary: "Start a stopped workspace again.",
  description: "Boot a stopped workspace again with its /workspace intact.",
  input: ref,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-full"],
  run: async (ctx, input) => publicRecord(await startWorkspace(ctx, input.workspace_id)),
  render: (out) => renderWorkspace(out),
});

export const deleteOp = defineOperation({
  name: "workspace_delete",
  sdk: "deleteWorkspace",
  sdkArgs: ["workspace_id"],
  output: out.workspaceDeleted,
  mutates: false,
  cli: ["workspace", "delete"],
  positionals: ["workspace_id"],
  summary: "Delete a workspace: its machine, files and record.",
  description:
    "Stop the workspace's machine and delete everything it holds. This cannot be undone: export what you need first.",
  input: ref,
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-core", "workspace-full"],
  run: (ctx, input) => deleteWorkspace(ctx, input.workspace_id),
  render: (out) => `deleted ${out.workspace_id}`,
});
