/**
 * The supervisor's own requests (`sup.*`), served by the per-workspace supervisor itself
 * on run/supervisor.sock and never relayed to the agent (every other op is relayed as is).
 * Same framing and conventions as the agent's messages (messages.ts); shared here so the
 * client (src/manager) and the supervisor (src/supervisor) use one definition, pinned by
 * messages.snapshot.json.
 */
import * as v from "valibot";
import {
  ExecRequest,
  SERVICE_NAME_RE,
  SERVICE_RUN_FIELDS,
  ServiceReadiness,
  ShellOpenRequest,
  ShellResizeRequest,
  ShellSignalRequest,
  ShellWriteRequest,
  SignalMessage,
} from "./messages.ts";

const posInt = v.pipe(v.number(), v.integer(), v.minValue(0));

export const SupStatusRequest = v.strictObject({ op: v.literal("sup.status") });
/** The machine behind the workspace, as the supervisor holds it. */
export const SupStatusResult = v.strictObject({
  /** "firecracker" | "qemu" | "host" (src/vmm's BackendName) */
  backend: v.string(),
  /** "kvm" | "tcg" | null */
  accelerator: v.nullable(v.string()),
  vmm_pid: posInt,
  supervisor_pid: posInt,
  kernel: v.string(),
  boot_id: v.string(),
  agent_version: v.string(),
});
/** Stop the machine (clean agent shutdown) and end the supervisor; answered first. */
export const SupStopRequest = v.strictObject({ op: v.literal("sup.stop") });
export const SupStopResult = v.strictObject({ stopping: v.literal(true) });
/**
 * Save the machine's full state to the workspace's paused/ directory, stop the VMM without a
 * guest shutdown and end the supervisor with the record `paused` (a failed save ends as a
 * stop whose reason says why); answered first.
 */
export const SupPauseRequest = v.strictObject({ op: v.literal("sup.pause") });
export const SupPauseResult = v.strictObject({ pausing: v.literal(true) });
/** As sup.stop, then remove the workspace's files. */
export const SupDeleteRequest = v.strictObject({ op: v.literal("sup.delete") });
export const SupDeleteResult = v.strictObject({ deleting: v.literal(true) });

/**
 * Start a detached exec (src/supervisor/detached.ts): the supervisor runs `exec` on the agent
 * itself and spools its output to the workspace's logs/exec/<exec_id>/ on the host, so the
 * command outlives every client. Answered once the command runs (or already ended); a start
 * whose `idempotency_key` the workspace has seen answers with that exec (`reused: true`).
 */
export const SupExecStartRequest = v.strictObject({
  op: v.literal("sup.exec.start"),
  exec: ExecRequest,
  idempotency_key: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(200))),
});
export const SupExecStartResult = v.strictObject({
  exec_id: v.pipe(v.string(), v.regex(/^ex_[0-9a-f]{12}$/)),
  reused: v.boolean(),
});
/** Signal a running detached exec's process group; `killed` is false when it is not running. */
export const SupExecKillRequest = v.strictObject({
  op: v.literal("sup.exec.kill"),
  exec_id: v.string(),
  signal: SignalMessage.entries.signal,
});
export const SupExecKillResult = v.strictObject({ killed: v.boolean() });

/**
 * Shells (src/supervisor/shells.ts): the supervisor opens each shell on the agent
 * (shell.open) and keeps its output in an append-only buffer that outlives every client, read
 * by cursor. `cursor` counts characters (UTF-16 code units) of the decoded output since the
 * shell opened; a shell that ended stays readable (state "exited") until it is closed.
 */
const shellId = v.pipe(v.string(), v.regex(/^sh_[0-9a-f]{12}$/));
const termSize = ShellResizeRequest.entries.cols;
export const ShellInfo = v.strictObject({
  shell_id: shellId,
  state: v.picklist(["running", "exited", "closed"]),
  /** as users see it: /workspace/... */
  cwd: v.string(),
  cols: posInt,
  rows: posInt,
  started_at: v.string(),
  ended_at: v.nullable(v.string()),
  exit_code: v.nullable(v.pipe(v.number(), v.integer())),
  /** the end of the output so far: the cursor a read from now on starts at */
  output_chars: posInt,
});
export const SupShellOpenRequest = v.strictObject({
  op: v.literal("sup.shell.open"),
  cwd: ShellOpenRequest.entries.cwd,
  cols: v.optional(termSize),
  rows: v.optional(termSize),
  env: ShellOpenRequest.entries.env,
  secret_env: ShellOpenRequest.entries.secret_env,
});
export const SupShellReadRequest = v.strictObject({
  op: v.literal("sup.shell.read"),
  shell_id: v.string(),
  cursor: v.optional(posInt),
  max_chars: v.optional(v.pipe(posInt, v.minValue(1))),
  /** return once the shell has printed nothing for this long (or ended, or timeout_ms passed) */
  wait_for_idle_ms: v.optional(v.pipe(posInt, v.minValue(1))),
  timeout_ms: v.optional(v.pipe(posInt, v.minValue(1))),
});
export const SupShellReadResult = v.strictObject({
  ...ShellInfo.entries,
  output: v.string(),
  /** where `output` starts: the cursor asked for, or the oldest kept one when it fell behind */
  cursor: posInt,
  next_cursor: posInt,
  /** output between the cursor asked for and `cursor` was dropped (the buffer is bounded) */
  truncated: v.boolean(),
  /** more output is kept past next_cursor (max_chars stopped this read) */
  has_more: v.boolean(),
});
export const SupShellWriteRequest = v.strictObject({
  op: v.literal("sup.shell.write"),
  shell_id: v.string(),
  input: ShellWriteRequest.entries.input,
});
export const SupShellSignalRequest = v.strictObject({
  op: v.literal("sup.shell.signal"),
  shell_id: v.string(),
  signal: ShellSignalRequest.entries.signal,
});
export const SupShellResizeRequest = v.strictObject({
  op: v.literal("sup.shell.resize"),
  shell_id: v.string(),
  cols: termSize,
  rows: termSize,
});
export const SupShellCloseRequest = v.strictObject({
  op: v.literal("sup.shell.close"),
  shell_id: v.string(),
});
export const SupShellListRequest = v.strictObject({ op: v.literal("sup.shell.list") });
export const SupShellListResult = v.strictObject({ shells: v.array(ShellInfo) });

/** Services (src/supervisor/services.ts):
 * the supervisor runs each one on the agent
 * (service.start, guest/service.ts), restarts it when asked, spools its output to
 * logs/services/<name>/ on the host and keeps its record there (service.json, this shape),
 * which clients read directly. sup.service.start answers once the service is ready, or
 * fails (SERVICE_NOT_READY with the log tail) leaving it recorded `failed`.
 */
const serviceName = v.pipe(v.string(), v.regex(SERVICE_NAME_RE));
const port = v.pipe(posInt, v.minValue(1), v.maxValue(65535));
export const PublishedPort = v.strictObject({
  guest_port: port,
  host_port: port,
  host: v.literal("127.0.0.1"),
});
export const ServiceRecord = v.strictObject({
  service_name: serviceName,
  state: v.picklist(["starting", "ready", "failed", "exited", "stopped"]),
  command: v.nullable(v.string()),
  argv: v.nullable(v.array(v.string())),
  cwd: v.nullable(v.string()),
  readiness: v.nullable(ServiceReadiness),
  ready_timeout_ms: posInt,
  ready_interval_ms: posInt,
  restart: v.picklist(["no", "on-failure"]),
  stop_grace_ms: posInt,
  /** ports asked for: host_port null = an ephemeral one */
  publish: v.array(v.strictObject({ guest_port: port, host_port: v.nullable(port) })),
  /** forwards open now (only while ready) */
  published_ports: v.array(PublishedPort),
  /** the first run's start, and the current (or last) run's */
  started_at: v.string(),
  run_started_at: v.string(),
  ready_at: v.nullable(v.string()),
  ended_at: v.nullable(v.string()),
  exit_code: v.nullable(v.pipe(v.number(), v.integer())),
  signal: v.nullable(v.string()),
  restart_count: posInt,
  /** why it is failed, exited or stopped */
  end_reason: v.nullable(v.string()),
  /** the current run's process group in the guest */
  pid: v.nullable(posInt),
  /** the supervisor that owns it: starting/ready only while that one is the workspace's live supervisor */
  supervisor_pid: posInt,
  /** absolute byte offset of the current log file's first byte (earlier bytes are in <stream>.1 or dropped) */
  stdout_base: posInt,
  stderr_base: posInt,
});
export const SupServiceStartRequest = v.strictObject({
  op: v.literal("sup.service.start"),
  service: v.pipe(
    v.strictObject(SERVICE_RUN_FIELDS),
    v.check((r) => (r.command === undefined) !== (r.argv === undefined), "exactly one of command or argv"),
  ),
  restart: v.picklist(["no", "on-failure"]),
  publish: v.array(v.strictObject({ guest_port: port, host_port: v.nullable(port) })),
});
export const SupServiceStopRequest = v.strictObject({
  op: v.literal("sup.service.stop"),
  service_name: v.string(),
  grace_ms: posInt,
});

/**
 * Published ports (src/supervisor/forward.ts): a listener on 127.0.0.1 of the host whose
 * connections are carried to a guest port over the agent channel (net.connect). Services
 * publish their ports through these forwards; the requests open and close one directly (tests,
 * tools). host_port 0 or absent: an ephemeral port, reported back. Forwards are keyed by host
 * port and end with the supervisor.
 */
export const SupForwardOpenRequest = v.strictObject({
  op: v.literal("sup.forward.open"),
  guest_port: port,
  host_port: v.optional(v.pipe(posInt, v.maxValue(65535))),
});
export const SupForwardCloseRequest = v.strictObject({ op: v.literal("sup.forward.close"), host_port: port });
/** `closed` is false when no forward listened on that port. */
export const SupForwardCloseResult = v.strictObject({ closed: v.boolean() });
export const SupForwardListRequest = v.strictObject({ op: v.literal("sup.forward.list") });
export const SupForwardListResult = v.strictObject({ forwards: v.array(PublishedPort) });

export const SUPERVISOR_TABLE = {
  "sup.status": { request: SupStatusRequest, result: SupStatusResult },
  "sup.stop": { request: SupStopRequest, result: SupStopResult },
  "sup.pause": { request: SupPauseRequest, result: SupPauseResult },
  "sup.delete": { request: SupDeleteRequest, result: SupDeleteResult },
  "sup.exec.start": { request: SupExecStartRequest, result: SupExecStartResult },
  "sup.exec.kill": { request: SupExecKillRequest, result: SupExecKillResult },
  "sup.shell.open": { request: SupShellOpenRequest, result: ShellInfo },
  "sup.shell.read": { request: SupShellReadRequest, result: SupShellReadResult },
  "sup.shell.write": { request: SupShellWriteRequest, result: ShellInfo },
  "sup.shell.signal": { request: SupShellSignalRequest, result: ShellInfo },
  "sup.shell.resize": { request: SupShellResizeRequest, result: ShellInfo },
  "sup.shell.close": { request: SupShellCloseRequest, result: ShellInfo },
  "sup.shell.list": { request: SupShellListRequest, result: SupShellListResult },
  "sup.service.start": { request: SupServiceStartRequest, result: ServiceRecord },
  "sup.service.stop": { request: SupServiceStopRequest, result: ServiceRecord },
  "sup.forward.open": { request: SupForwardOpenRequest, result: PublishedPort },
  "sup.forward.close": { request: SupForwardCloseRequest, result: SupForwardCloseResult },
  "sup.forward.list": { request: SupForwardListRequest, result: SupForwardListResult },
} as const;

export type SupervisorOp = keyof typeof SUPERVISOR_TABLE;

/** Requests with this prefix are the supervisor's own. */
export const SUPERVISOR_OP_PREFIX = "sup.";
