/**
 * Services: `pyro workspace service start|list|status|logs|stop`, MCP service_*, SDK
 * startService/listServices/serviceStatus/serviceLogs/stopService. A service is a named,
 * supervised process group in the guest whose readiness is probed there; the workspace's
 * supervisor keeps its record and logs outside /workspace (src/manager/services.ts) and
 * publishes its ports on 127.0.0.1 while it is ready. Services end with reset, stop, delete.
 *
 * The CLI spells the structured fields as flags: `readiness` as one of --ready-file,
 * --ready-tcp, --ready-http, --ready-command; `published_ports` as --publish [HOST:]GUEST
 * (repeatable). Those flag fields are CLI/SDK only (mcpOmit) and the structured ones MCP/SDK
 * only (cliOmit); giving both, or two readiness kinds, is INVALID_INPUT.
 */
import * as v from "valibot";
import {
  listServices,
  type PublishSpec,
  parsePublish,
  SERVICE_LOGS_READ_BYTES,
  SERVICE_READY_INTERVAL_MS,
  SERVICE_READY_TIMEOUT_SECONDS,
  SERVICE_STOP_GRACE_SECONDS,
  SERVICE_TAIL_LINES,
  type ServiceView,
  serviceLogs,
  serviceStatus,
  startService,
  stopService,
} from "../manager/services.ts";
import { PyroError } from "../protocol/errors.ts";
import { ServiceReadiness } from "../protocol/messages.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { renderTable } from "./render.ts";
import { defineOperation } from "./types.ts";

const RO = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const serviceName = v.pipe(
  v.string(),
  v.regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "a service name is lowercase [a-z0-9][a-z0-9._-]{0,62}"),
  v.description("The service's name, unique in the workspace: [a-z0-9][a-z0-9._-]{0,62}."),
);
const port = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535));

function renderService(s: ServiceView): string {
  const how =
    s.state === "ready"
      ? `ready since ${s.ready_at}`
      : s.end_reason
        ? `${s.state}: ${s.end_reason}`
        : s.state;
  const ports = s.published_ports.map((p) => `${p.host}:${p.host_port} → ${p.guest_port}`).join(", ");
  return [
    `service ${s.service_name} in ${s.workspace_id}: ${how}`,
    `  command: ${s.command ?? (s.argv ?? []).join(" ")}`,
    s.restart_count ? `  restarts: ${s.restart_count}` : "",
    ports ? `  published: ${ports}` : "",
    `  logs: pyro workspace service logs ${s.workspace_id} ${s.service_name} --tail-lines 50`,
  ]
    .filter(Boolean)
    .join("\n");
}

type ReadyFlags = { ready_file?: string; ready_tcp?: number; ready_http?: string; ready_command?: string };

/** The readiness probe from `readiness` or exactly one --ready-* flag (none: ready once started). */
function readinessOf(input: ReadyFlags & { readiness?: v.InferOutput<typeof ServiceReadiness> }) {
  const flags = [
    input.ready_file !== undefined ? { type: "file" as const, path: input.ready_file } : null,
    input.ready_tcp !== undefined ? { type: "tcp" as const, port: input.ready_tcp } : null,
    input.ready_http !== undefined ? { type: "http" as const, url: input.ready_http } : null,
    input.ready_command !== undefined ? { type: "command" as const, command: input.ready_command } : null,
  ].filter((x) => x !== null);
  if (flags.length + (input.readiness ? 1 : 0) > 1)
    throw new PyroError(
      "INVALID_INPUT",
      "give one readiness probe: --ready-file, --ready-tcp, --ready-http or --ready-command (or readiness)",
    );
  const r = input.readiness ?? flags[0];
  if (!r) return undefined;
  const parsed = v.safeParse(ServiceReadiness, r);
  if (!parsed.success)
    throw new PyroError("INVALID_INPUT", `readiness ${r.type}: ${parsed.issues[0]?.message ?? "invalid"}`);
  return parsed.output;
}

function portsOf(input: { published_ports?: PublishSpec[]; publish?: string[] }): PublishSpec[] {
  if (input.published_ports && input.publish)
    throw new PyroError("INVALID_INPUT", "give published_ports or --publish, not both");
  return input.published_ports ?? (input.publish ?? []).map(parsePublish);
}

export const serviceStartOp = defineOperation({
  name: "service_start",
  sdk: "startService",
  sdkArgs: ["workspace_id", "service_name", "command"],
  output: out.serviceInfo,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "service", "start"],
  positionals: ["workspace_id", "service_name"],
  rest: "command",
  summary: "Start a named service (a supervised process) and wait until it is ready.",
  description: `Start a long-running process in the workspace under a name (a dev server, a database) and return once it is ready: readiness is probed inside the guest every ready_interval_ms (default ${SERVICE_READY_INTERVAL_MS}) until ready_timeout_seconds (default ${SERVICE_READY_TIMEOUT_SECONDS}): {type: "http", url} (a 2xx/3xx answer), {type: "tcp", port} (127.0.0.1:port accepts), {type: "file", path} (exists under /workspace) or {type: "command", command} (exits 0); without readiness it is ready once started. A service that is not ready in time is stopped and recorded failed; the error (SERVICE_NOT_READY) carries the tail of its logs. restart: "on-failure" starts it again after it crashes (backoff 1 s doubling to 30 s, at most 10 in a row). published_ports forwards a 127.0.0.1 port of the host to a guest port while the service is ready (the workspace needs network_policy egress+published-ports; host_port omitted = an ephemeral one, reported back). Its output is kept outside /workspace: read it with service_logs. Services end when the workspace is reset, stopped or deleted.`,
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    service_name: serviceName,
    command: f.command,
    cwd: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.description("Working directory under /workspace (default /workspace)."),
      ),
    ),
    secret_env: v.optional(f.secretEnv),
    readiness: v.optional(
      v.pipe(
        ServiceReadiness,
        v.description(
          'How to tell it is ready: {type: "http", url} | {type: "tcp", port} | {type: "file", path} | {type: "command", command}. Omitted: ready once started.',
        ),
      ),
    ),
    ready_file: v.optional(
      v.pipe(v.string(), v.minLength(1), v.description("Ready once this file exists (under /workspace).")),
    ),
    ready_tcp: v.optional(
      v.pipe(port, v.description("Ready once 127.0.0.1:PORT in the guest accepts a connection.")),
    ),
    ready_http: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.description("Ready once a GET of this URL (in the guest) answers 2xx or 3xx."),
      ),
    ),
    ready_command: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.description("Ready once this command (/bin/sh -c, in the guest) exits 0."),
      ),
    ),
    ready_timeout_seconds: v.optional(
      v.pipe(
        v.number(),
        v.gtValue(0),
        v.maxValue(3600),
        v.description(`How long readiness may take (default ${SERVICE_READY_TIMEOUT_SECONDS}).`),
      ),
    ),
    ready_interval_ms: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(10),
        v.maxValue(60_000),
        v.description(`How often readiness is probed (default ${SERVICE_READY_INTERVAL_MS}).`),
      ),
    ),
    restart: v.optional(
      v.pipe(
        v.picklist(["no", "on-failure"]),
        v.description(
          "on-failure: start it again when it exits non-zero or is killed after it was ready (backoff 1 s doubling to 30 s; failed after 10 in a row). Default no.",
        ),
      ),
    ),
    published_ports: v.optional(
      v.pipe(
        v.array(
          v.strictObject({
            guest_port: v.pipe(port, v.description("The service's port in the guest.")),
            host_port: v.optional(
              v.pipe(port, v.description("The port on the host's 127.0.0.1 (default: an ephemeral one).")),
            ),
          }),
        ),
        v.maxLength(16),
        v.description(
          "Forward host ports (127.0.0.1 only) to guest ports while the service is ready; needs network_policy egress+published-ports.",
        ),
      ),
    ),
    publish: v.optional(
      v.pipe(
        v.array(v.string()),
        v.maxLength(16),
        v.description(
          "Publish a guest port on the host's 127.0.0.1: [HOST:]GUEST, repeatable (HOST omitted: an ephemeral port, reported back).",
        ),
      ),
    ),
  }),
  mcpOmit: ["ready_file", "ready_tcp", "ready_http", "ready_command", "publish"],
  cliOmit: ["readiness", "published_ports"],
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  profiles: ["workspace-full"],
  examples: [
    "pyro workspace service start app web --ready-http http://127.0.0.1:8000/ --publish 8000 -- python3 -m http.server 8000",
    "pyro workspace service start app db --ready-tcp 5432 --restart on-failure -- postgres -D /workspace/db",
  ],
  run: (ctx, input) =>
    startService(ctx, input.workspace_id, {
      service_name: input.service_name,
      command: input.command,
      cwd: input.cwd,
      secret_env: input.secret_env,
      readiness: readinessOf(input),
      ready_timeout_seconds: input.ready_timeout_seconds,
      ready_interval_ms: input.ready_interval_ms,
      restart: input.restart,
      published_ports: portsOf(input),
    }),
  render: renderService,
});

export const serviceListOp = defineOperation({
  name: "service_list",
  sdk: "listServices",
  sdkArgs: ["workspace_id"],
  output: out.serviceList,
  mutates: false,
  cli: ["workspace", "service", "list"],
  positionals: ["workspace_id"],
  summary: "List a workspace's services.",
  description:
    "List the workspace's services since its last reset: name, state (starting, ready, failed, exited, stopped), restart count, published ports, and why an ended one ended.",
  input: v.strictObject({ workspace_id: f.workspaceRef }),
  annotations: RO,
  profiles: ["workspace-full"],
  run: (ctx, input) => listServices(ctx, input.workspace_id),
  render: (r) =>
    r.services.length === 0
      ? "no services"
      : renderTable([
          ["SERVICE", "STATE", "RESTARTS", "PORTS", "COMMAND"],
          ...r.services.map((s) => [
            s.service_name,
            s.state,
            String(s.restart_count),
            s.published_ports.map((p) => `${p.host_port}->${p.guest_port}`).join(",") || "-",
            s.command ?? (s.argv ?? []).join(" "),
          ]),
        ]),
});

export const serviceStatusOp = defineOperation({
  name: "service_status",
  sdk: "serviceStatus",
  sdkArgs: ["workspace_id", "service_name"],
  output: out.serviceInfo,
  mutates: false,
  cli: ["workspace", "service", "status"],
  positionals: ["workspace_id", "service_name"],
  summary: "Show one service's state.",
  description:
    "Return one service: state, ready_at, exit_code and signal of its last run, restart_count, published_ports (host 127.0.0.1 ports while ready), end_reason, and the bytes logged so far.",
  input: v.strictObject({ workspace_id: f.workspaceRef, service_name: serviceName }),
  annotations: RO,
  profiles: ["workspace-full"],
  run: (ctx, input) => serviceStatus(ctx, input.workspace_id, input.service_name),
  render: renderService,
});

export const serviceLogsOp = defineOperation({
  name: "service_logs",
  sdk: "serviceLogs",
  sdkArgs: ["workspace_id", "service_name"],
  output: out.serviceLogs,
  mutates: false,
  cli: ["workspace", "service", "logs"],
  positionals: ["workspace_id", "service_name"],
  summary: "Read a service's stdout and stderr (tail, or by offset).",
  description: `Read a service's output, kept outside /workspace across restarts: by default the last tail_lines (default ${SERVICE_TAIL_LINES}) of stdout and of stderr; with offset, up to max_bytes (default ${SERVICE_LOGS_READ_BYTES}) of one stream from that byte offset (pass next_offset to read on). Each stream keeps its last 8-16 MiB (rotation); truncated: true means bytes before offset were dropped.`,
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    service_name: serviceName,
    tail_lines: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(0),
        v.maxValue(100_000),
        v.description(`Lines from the end of each stream (default ${SERVICE_TAIL_LINES}).`),
      ),
    ),
    offset: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(0),
        v.description("Read one stream from this byte offset instead."),
      ),
    ),
    stream: v.optional(
      v.pipe(v.picklist(["stdout", "stderr"]), v.description("With offset: which stream (default stdout).")),
    ),
    max_bytes: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(1),
        v.maxValue(16 * 1024 * 1024),
        v.description(`With offset: the most bytes to return (default ${SERVICE_LOGS_READ_BYTES}).`),
      ),
    ),
  }),
  annotations: RO,
  profiles: ["workspace-full"],
  examples: [
    "pyro workspace service logs app web --tail-lines 50",
    "pyro workspace service logs app web --offset 0 --stream stderr --json",
  ],
  run: (ctx, input) => serviceLogs(ctx, input.workspace_id, input.service_name, input),
  render: (r) => {
    const block = (label: string, text: string) =>
      text ? `--- ${label} ---\n${text}${text.endsWith("\n") ? "" : "\n"}` : "";
    const body = `${block("stdout", r.stdout)}${block("stderr", r.stderr)}` || "(no output)\n";
    const where = r.next_offset === null ? "" : ` next: --offset ${r.next_offset} --stream ${r.stream}`;
    return `${body}[service ${r.service_name} ${r.state}; stdout ${r.stdout_bytes} bytes, stderr ${r.stderr_bytes} bytes${where}]`;
  },
});

export const serviceStopOp = defineOperation({
  name: "service_stop",
  sdk: "stopService",
  sdkArgs: ["workspace_id", "service_name"],
  output: out.serviceInfo,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "service", "stop"],
  positionals: ["workspace_id", "service_name"],
  summary: "Stop a service (TERM, then KILL after a grace period).",
  description: `Stop a service: TERM to its whole process group, KILL to whatever is left after grace_seconds (default ${SERVICE_STOP_GRACE_SECONDS}); its published ports close; a pending restart is cancelled. Its record and logs stay (state stopped) until the workspace is reset. Stopping a service that is not running returns it as it is.`,
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    service_name: serviceName,
    grace_seconds: v.optional(
      v.pipe(
        v.number(),
        v.minValue(0),
        v.maxValue(300),
        v.description(`Seconds between TERM and KILL (default ${SERVICE_STOP_GRACE_SECONDS}).`),
      ),
    ),
  }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-full"],
  run: (ctx, input) => stopService(ctx, input.workspace_id, input.service_name, input.grace_seconds),
  render: renderService,
});
