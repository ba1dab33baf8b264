/**
 * Every message between host and agent, written once as strict valibot schemas. The first
 * JSON frame of a stream is a request (`op`); the last frame back is `{type: "result",
 * ...result}` or an `error`, with the END flag. Data frames in between carry raw bytes on a
 * channel (file content, tar, exec output): only the JSON is schema-checked.
 *
 * MESSAGE_TABLE is the one list: op → request schema + result schema (+ the exec stream's
 * event and control messages). `Request` is derived from it; the agent validates every
 * request (guest/server.ts), the host validates every request before sending and every result
 * where it arrives (call.ts). Results are strict: a field the table does not name is a
 * protocol error, so the schemas describe exactly what the agent sends (guest/contract.test.ts
 * runs every handler's result through them). messages.snapshot.json pins the table
 * (messages.test.ts).
 */
import * as v from "valibot";
import { ERROR_CODES } from "./errors.ts";
import { SECRET_MAX_BYTES, SECRET_NAME_RE, SECRETS_MAX_COUNT, SHELL_INPUT_MAX_CHARS } from "./limits.ts";

const path = v.pipe(v.string(), v.minLength(1), v.maxLength(4096));
const envMap = v.record(v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/)), v.string());
const posInt = v.pipe(v.number(), v.integer(), v.minValue(0));
const secretName = v.pipe(v.string(), v.regex(SECRET_NAME_RE));
/**
 * Secrets injected into one command: secret name → environment variable. Only names cross
 * the wire per call; the agent takes the values from what secrets.set gave it.
 */
const secretEnv = v.record(secretName, v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/)));

export const HelloRequest = v.strictObject({
  op: v.literal("hello"),
  protocol_version: posInt,
  host_version: v.string(),
  config: v.optional(
    v.strictObject({
      clock_unix_ms: v.optional(posInt),
      hostname: v.optional(v.string()),
      env: v.optional(envMap),
    }),
  ),
});

export const PingRequest = v.strictObject({ op: v.literal("ping") });
/** Sent right after hello: the hello's own timestamp is stale by the guest's boot time. */
export const ClockSetRequest = v.strictObject({ op: v.literal("clock.set"), unix_ms: posInt });
export const InfoRequest = v.strictObject({ op: v.literal("info") });
export const ShutdownRequest = v.strictObject({ op: v.literal("shutdown") });

/** RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens. */
const hostName = v.pipe(
  v.string(),
  v.maxLength(64),
  v.regex(/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/),
);
/**
 * A guest boots detached from its workspace disk (pyro-init only mounts /proc, /sys, /dev and
 * starts the agent on the read-only root); this request attaches it: mount the data disk,
 * build the overlay root, pivot into it, set hostname, DNS, lo, the clock, mix in the host's
 * entropy and take the host's boot id (guest/attach.ts). Sent once per boot, right after the
 * hello when `hello.attached` is false; a second one is INVALID_STATE. Until it ran, a guest
 * agent refuses every request that touches the workspace. Host-compat agents are always
 * attached and answer it as a no-op.
 */
export const SysAttachRequest = v.strictObject({
  op: v.literal("sys.attach"),
  /** host clock, set in the guest */
  unix_ms: posInt,
  /** base64 of 32..4096 random bytes from the host, mixed into the guest kernel's CRNG */
  entropy: v.pipe(
    v.string(),
    v.maxLength(5464),
    v.base64(),
    v.check((s) => (s.length / 4) * 3 - (s.match(/=*$/)?.[0].length ?? 0) >= 32, "at least 32 bytes"),
  ),
  /** the boot id the host made; the guest reports it from /proc/sys/kernel/random/boot_id */
  boot_id: v.pipe(v.string(), v.uuid()),
  /** else /etc/hostname */
  hostname: v.optional(hostName),
  /** resolver written to /etc/resolv.conf; else the kernel's `ip=` autoconfig's, if any */
  dns: v.optional(v.pipe(v.string(), v.ip())),
  /** the workspace disk is /dev/vdb; false: changes live in a tmpfs (one-shot runs) */
  data_disk: v.boolean(),
});

export const ExecRequest = v.pipe(
  v.strictObject({
    op: v.literal("exec"),
    /** run by /bin/sh -c */
    command: v.optional(v.string()),
    /** run directly */
    argv: v.optional(v.pipe(v.array(v.string()), v.minLength(1))),
    cwd: v.optional(path),
    env: v.optional(envMap),
    timeout_ms: v.optional(v.pipe(posInt, v.minValue(1))),
    /** per stream; output past it is dropped and flagged *_truncated */
    max_output_bytes: v.optional(posInt),
    /** when true the client sends stdin as channel-0 data frames, then END */
    stdin: v.optional(v.boolean()),
    secret_env: v.optional(secretEnv),
  }),
  v.check((r) => (r.command === undefined) !== (r.argv === undefined), "exactly one of command or argv"),
);

/**
 * Kill the process group of a running exec (`pid` from its `started` event), on a fresh
 * stream: the supervisor sends it when an exec's result is overdue, and the answer proves
 * the agent is alive. Result: `{ killed }` (false when no such group is running).
 */
export const ExecKillRequest = v.strictObject({
  op: v.literal("exec.kill"),
  pid: v.pipe(posInt, v.minValue(1)),
});

/** Sent by the client on an open exec stream. */
export const SignalMessage = v.strictObject({
  op: v.literal("signal"),
  signal: v.picklist(["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"]),
});

export const FsStatRequest = v.strictObject({ op: v.literal("fs.stat"), path });
export const FsListRequest = v.strictObject({
  op: v.literal("fs.list"),
  path,
  recursive: v.optional(v.boolean()),
  max_entries: v.optional(posInt),
});
export const FsReadRequest = v.strictObject({
  op: v.literal("fs.read"),
  path,
  max_bytes: v.optional(posInt),
  offset: v.optional(posInt),
});
/** followed by channel-0 data frames with the content, then END */
export const FsWriteRequest = v.strictObject({
  op: v.literal("fs.write"),
  path,
  mode: v.optional(v.pipe(posInt, v.maxValue(0o7777))),
  create_parents: v.optional(v.boolean()),
});
export const FsMkdirRequest = v.strictObject({
  op: v.literal("fs.mkdir"),
  path,
  parents: v.optional(v.boolean()),
});
export const FsRemoveRequest = v.strictObject({
  op: v.literal("fs.remove"),
  path,
  recursive: v.optional(v.boolean()),
});
export const FsMoveRequest = v.strictObject({
  op: v.literal("fs.move"),
  from: path,
  to: path,
  overwrite: v.optional(v.boolean()),
});
/** followed by channel-0 data frames with a tar (optionally gzip) stream, then END */
export const ArchiveImportRequest = v.strictObject({
  op: v.literal("archive.import"),
  dest: path,
  strip_components: v.optional(posInt),
  /**
   * Also capture the diff baseline from the stream (a seeded create): dest must be /workspace;
   * the result then carries `baseline` (what `baseline.capture` answers, plus `files_read`: files
   * that had to be read back because the import did not write them as they are).
   */
  baseline: v.optional(v.boolean()),
});
/** answered with channel-1 data frames carrying a tar stream, then the result */
export const ArchiveExportRequest = v.strictObject({ op: v.literal("archive.export"), path });
/**
 * A unified diff to apply to /workspace, checked whole before anything is written.
 * `patch` inline (bounded by the frame size), or omitted and sent as channel-0 data frames
 * after the request, then END (up to 8 MiB). Result: `{ files: [{ path, status, from? }],
 * hunks_applied, files_truncated }`, status added|modified|deleted|renamed.
 */
export const PatchApplyRequest = v.strictObject({
  op: v.literal("patch.apply"),
  patch: v.optional(v.string()),
});
/** Snapshot /workspace as the diff baseline (replacing any earlier one). Result: `{ files, tree, commit }`. */
export const BaselineCaptureRequest = v.strictObject({ op: v.literal("baseline.capture") });
/**
 * Flush and freeze the filesystem on the workspace's data disk (FIFREEZE on the guest's
 * /run/pyro/data) so the host can copy the disk image as one clean, consistent whole; writes
 * in the guest block until `fs.thaw`. The agent thaws by itself after `timeout_ms` if no thaw
 * comes (a host that died must not leave the guest frozen). Guest only. Result:
 * `{ frozen: true, mount }`.
 */
export const FsFreezeRequest = v.strictObject({
  op: v.literal("fs.freeze"),
  timeout_ms: v.pipe(posInt, v.minValue(1), v.maxValue(600_000)),
});
/**
 * End a freeze. Result: `{ thawed }`, false when nothing was frozen any more (the agent's own
 * timeout thawed it first): a copy made meanwhile is not consistent and must be thrown away.
 */
export const FsThawRequest = v.strictObject({ op: v.literal("fs.thaw") });
/**
 * /workspace against the baseline. The unified patch comes as channel-1 data frames (UTF-8),
 * then the result: `{ patch_bytes, files: [{ path, status, binary, old_mode?, new_mode?,
 * additions, deletions }], summary: { files_changed, additions, deletions, binary_files },
 * truncated, files_truncated, files_hashed }`. `max_bytes` bounds the patch (whole files only).
 */
export const DiffRequest = v.strictObject({ op: v.literal("diff"), max_bytes: v.optional(posInt) });

/**
 * Persistent shells (guest/shell.ts). `shell_id` is chosen by the opener (the supervisor),
 * so it can address the shell before the agent answers. shell.open's stream stays open while
 * the shell runs: a `started` event, the PTY's output as channel-1 data frames, then the
 * result once the shell has ended (exited, or closed by shell.close). `env` is added to the
 * agent's environment (the hook for secrets: secret_env values arrive here).
 */
export const SHELL_SIGNALS = [
  "SIGINT",
  "SIGTERM",
  "SIGKILL",
  "SIGHUP",
  "SIGQUIT",
  "SIGTSTP",
  "SIGCONT",
] as const;
const shellId = v.pipe(v.string(), v.regex(/^sh_[0-9a-f]{12}$/));
const termSize = v.pipe(posInt, v.minValue(2), v.maxValue(1000));
export const ShellOpenRequest = v.strictObject({
  op: v.literal("shell.open"),
  shell_id: shellId,
  cwd: v.optional(path),
  cols: v.optional(termSize),
  rows: v.optional(termSize),
  env: v.optional(envMap),
  secret_env: v.optional(secretEnv),
});
/** Bytes typed into the shell's PTY, as text (at most SHELL_INPUT_MAX_CHARS). */
export const ShellWriteRequest = v.strictObject({
  op: v.literal("shell.write"),
  shell_id: shellId,
  input: v.pipe(v.string(), v.maxLength(SHELL_INPUT_MAX_CHARS)),
});
/** To the PTY's foreground process group (tcgetpgrp), else the shell's own session group. */
export const ShellSignalRequest = v.strictObject({
  op: v.literal("shell.signal"),
  shell_id: shellId,
  signal: v.picklist(SHELL_SIGNALS),
});
export const ShellResizeRequest = v.strictObject({
  op: v.literal("shell.resize"),
  shell_id: shellId,
  cols: termSize,
  rows: termSize,
});
/** Hang up the shell's session; its processes that outlive a grace period are killed. */
export const ShellCloseRequest = v.strictObject({ op: v.literal("shell.close"), shell_id: shellId });

/** Services (guest/service.ts): a named, supervised process group.
 * service.start's stream lives as long as one run of the service: a `started` event (its process group), the readiness
 * verdict (`ready` once the probe passed, at once without a probe; `not_ready` when
 * ready_timeout_ms passed first: the agent then stops the group itself), stdout/stderr as
 * channel-1/2 data frames, and the result once the group's leader has ended. Probes run in
 * the guest: file (exists, under /workspace), tcp (connect to 127.0.0.1:port), http (GET,
 * 2xx/3xx), command (/bin/sh -c, exit 0), first at once, then every ready_interval_ms.
 * Restarts are the host's (a fresh service.start with the same name).
 */
export const SERVICE_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const serviceName = v.pipe(v.string(), v.regex(SERVICE_NAME_RE));
export const ServiceReadiness = v.variant("type", [
  v.strictObject({ type: v.literal("file"), path }),
  v.strictObject({ type: v.literal("tcp"), port: v.pipe(posInt, v.minValue(1), v.maxValue(65535)) }),
  v.strictObject({
    type: v.literal("http"),
    url: v.pipe(v.string(), v.maxLength(4096), v.regex(/^https?:\/\/[^\s]+$/, "an http:// or https:// URL")),
  }),
  v.strictObject({ type: v.literal("command"), command: v.pipe(v.string(), v.minLength(1)) }),
]);
/** What runs and how it is probed (service.start's fields; also sup.service.start's `service`). */
export const SERVICE_RUN_FIELDS = {
  service_name: serviceName,
  /** run by /bin/sh -c */
  command: v.optional(v.string()),
  /** run directly */
  argv: v.optional(v.pipe(v.array(v.string()), v.minLength(1))),
  cwd: v.optional(path),
  env: v.optional(envMap),
  /** secret name → variable name, as on exec */
  secret_env: v.optional(secretEnv),
  readiness: v.optional(ServiceReadiness),
  ready_timeout_ms: v.pipe(posInt, v.minValue(1)),
  ready_interval_ms: v.pipe(posInt, v.minValue(1)),
  /** after TERM to the group, how long before KILL (readiness timeout, service.stop) */
  stop_grace_ms: posInt,
};
export const ServiceStartRequest = v.pipe(
  v.strictObject({ op: v.literal("service.start"), ...SERVICE_RUN_FIELDS }),
  v.check((r) => (r.command === undefined) !== (r.argv === undefined), "exactly one of command or argv"),
);
/** TERM to the service's process group, KILL to what is left after grace_ms. */
export const ServiceStopRequest = v.strictObject({
  op: v.literal("service.stop"),
  service_name: serviceName,
  grace_ms: posInt,
});

/**
 * The workspace's secrets (guest/secrets.ts), sent by the supervisor after every boot
 * (create, start, reset): they replace whatever the agent held. In a guest the agent also
 * writes them to /run/pyro/secrets/NAME (a tmpfs outside /workspace and the data disk;
 * directory 0700, files 0400). Result: `{ count }`.
 */
export const SecretsSetRequest = v.strictObject({
  op: v.literal("secrets.set"),
  secrets: v.pipe(
    v.array(
      v.strictObject({
        name: secretName,
        value: v.pipe(v.string(), v.minLength(1), v.maxLength(SECRET_MAX_BYTES)),
      }),
    ),
    v.maxLength(SECRETS_MAX_COUNT),
  ),
});

/**
 * Carry one TCP connection to 127.0.0.1:`port` inside the guest (in host compat: on the host),
 * the far end of a published port (src/supervisor/forward.ts; the agent's side is
 * guest/net.ts). Channel-0 data from the host is written to the connection and the host's END
 * half-closes it; the connection's bytes come back as channel-1 data and its FIN as an `eof`
 * event. Flow control per stream: each side acknowledges (cumulatively) the bytes it has
 * handed to its own socket — `ack` events from the agent, `ack` control messages from the
 * host — and neither sends more than NET_WINDOW_BYTES past the last ack, so a slow reader at
 * either end stalls only its own connection, never the shared agent channel. A `reset`
 * control message aborts the connection. Nothing listening: CONNECTION_REFUSED. The result
 * comes once the connection has closed.
 */
export const NetConnectRequest = v.strictObject({
  op: v.literal("net.connect"),
  port: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)),
});
/** Sent by the agent on a net.connect stream. */
export const NetEvent = v.variant("type", [
  /** bytes of the host's data written to the connection so far */
  v.strictObject({ type: v.literal("ack"), bytes: posInt }),
  /** the guest side half-closed (FIN): no more channel-1 data */
  v.strictObject({ type: v.literal("eof") }),
]);
/** Sent by the host on a net.connect stream. */
export const NetControl = v.variant("op", [
  /** bytes of the agent's data handed to the host's socket so far */
  v.strictObject({ op: v.literal("ack"), bytes: posInt }),
  /** the host's side went away: abort the connection */
  v.strictObject({ op: v.literal("reset") }),
]);

// ---------------------------------------------------------------------------------------
// Results: what follows `type: "result"` in the terminal frame (the host strips `type`).

const count = posInt;
const text = v.string();

/**
 * Pause/resume (src/supervisor/pause.ts): the running sessions the supervisor will save —
 * shells by id, services by name, detached execs by pid — survive the close of this
 * connection: their processes go on, and what they send meanwhile (output, events, their
 * end) is kept in the agent (KEPT_STREAM_BYTES of output per session, oldest dropped) until a
 * new connection adopts them (shell.adopt, service.adopt, exec.adopt) or sys.release ends them.
 * Anything else open on the connection ends with it, as always.
 */
export const SysKeepRequest = v.strictObject({
  op: v.literal("sys.keep"),
  shell_ids: v.array(shellId),
  service_names: v.array(serviceName),
  exec_pids: v.array(v.pipe(posInt, v.minValue(1))),
});
/** End every kept session no connection adopted (their processes are killed, as an abandoned stream's are). */
export const SysReleaseRequest = v.strictObject({ op: v.literal("sys.release") });
/**
 * Continue a kept session on this connection: an `adopted` event, then what was kept (events
 * and output in their order), then the session's own stream goes on here and ends with its
 * own result (shell.open's, service.start's, exec's). Not kept: SESSION_NOT_FOUND.
 */
export const ShellAdoptRequest = v.strictObject({ op: v.literal("shell.adopt"), shell_id: shellId });
export const ServiceAdoptRequest = v.strictObject({
  op: v.literal("service.adopt"),
  service_name: serviceName,
});
export const ExecAdoptRequest = v.strictObject({
  op: v.literal("exec.adopt"),
  pid: v.pipe(posInt, v.minValue(1)),
});

export const HelloResult = v.strictObject({
  protocol_version: posInt,
  agent_version: text,
  /** the agent is the guest's init (pid 1) */
  pid1: v.boolean(),
  kernel: text,
  boot_id: text,
  /** the root as users see it: always /workspace */
  root: text,
  /** sys.attach ran (always true in host compat); false: send it before anything else */
  attached: v.boolean(),
});
export const PingResult = v.strictObject({ pong: v.literal(true) });
export const ClockSetResult = v.strictObject({
  /** agent clock minus the host's, before setting */
  previous_offset_ms: v.pipe(v.number(), v.integer()),
  /** false in host compat (the host's clock is already right) */
  set: v.boolean(),
});
export const InfoResult = v.strictObject({
  agent_version: text,
  protocol_version: posInt,
  kernel: text,
  hostname: text,
  uptime_s: posInt,
  boot_id: text,
  memory: v.strictObject({ total_bytes: count, available_bytes: count }),
  /** null when the root cannot be statfs'd */
  disk: v.nullable(v.strictObject({ total_bytes: count, free_bytes: count })),
  agent_rss_bytes: count,
  guest: v.boolean(),
});
export const ShutdownResult = v.strictObject({ shutting_down: v.literal(true) });
export const SysAttachResult = v.strictObject({
  /** the guest's boot id now (the request's; in host compat the host's own) */
  boot_id: text,
  /** time the guest spent attaching (0 in host compat) */
  attached_ms: posInt,
});

/** Sent as a JSON event on an exec stream once the process runs (its group id). */
export const ExecStarted = v.strictObject({ type: v.literal("started"), pid: posInt });
/** stdout/stderr come before it as channel-1/2 data frames. */
export const ExecResult = v.strictObject({
  exit_code: v.pipe(v.number(), v.integer()),
  signal: v.nullable(text),
  timed_out: v.boolean(),
  stdout_bytes: count,
  stderr_bytes: count,
  stdout_truncated: v.boolean(),
  stderr_truncated: v.boolean(),
  duration_ms: posInt,
});
export type ExecResult = v.InferOutput<typeof ExecResult>;
export const ExecKillResult = v.strictObject({ killed: v.boolean() });

const artifactType = v.picklist(["file", "directory", "symlink", "other"]);
/** One file as fs results describe it (guest/fs.ts; the offline disk tools use the same shape). */
export const FileStat = v.strictObject({
  /** as users see it: /workspace/... */
  path: text,
  artifact_type: artifactType,
  size_bytes: count,
  /** permission bits as 4 octal digits, e.g. "0644" */
  mode: v.pipe(v.string(), v.regex(/^[0-7]{4}$/)),
  /** ISO 8601 */
  mtime: text,
  /** symlinks only */
  link_target: v.optional(text),
});
export type FileStat = v.InferOutput<typeof FileStat>;
export const FsListResult = v.strictObject({
  path: text,
  entries: v.array(FileStat),
  truncated: v.boolean(),
});
/** The content comes before it as channel-1 data frames (`bytes` of them). */
export const FsReadResult = v.strictObject({
  path: text,
  size_bytes: count,
  truncated: v.boolean(),
  encoding_hint: v.picklist(["utf8", "binary"]),
  bytes: count,
});
export const FsRemoveResult = v.strictObject({
  path: text,
  artifact_type: artifactType,
  removed: v.literal(true),
});
export const FsMoveResult = v.strictObject({ ...FileStat.entries, moved_from: text });
export const ArchiveImportResult = v.strictObject({
  path: text,
  files: count,
  directories: count,
  symlinks: count,
  bytes: count,
  /** with `baseline: true`; see BaselineCaptureResult */
  baseline: v.optional(v.strictObject({ files: count, tree: text, commit: text, files_read: count })),
});
/** The tar stream comes before it as channel-1 data frames (`bytes` of them). */
export const ArchiveExportResult = v.strictObject({ bytes: count });
export const PatchApplyResult = v.strictObject({
  files: v.array(
    v.strictObject({
      path: text,
      status: v.picklist(["added", "modified", "deleted", "renamed"]),
      /** renamed: the old path */
      from: v.optional(text),
    }),
  ),
  hunks_applied: count,
  /** the files list stops early (huge patches); the patch was applied whole all the same */
  files_truncated: v.boolean(),
});
export const FsFreezeResult = v.strictObject({ frozen: v.literal(true), mount: text });
export const FsThawResult = v.strictObject({ thawed: v.boolean() });
export const BaselineCaptureResult = v.strictObject({
  /** files and symlinks in the baseline */
  files: count,
  tree: text,
  commit: text,
});
/** The unified patch comes before it as channel-1 data frames (`patch_bytes` of UTF-8). */
export const DiffResult = v.strictObject({
  patch_bytes: count,
  files: v.array(
    v.strictObject({
      path: text,
      status: v.picklist(["added", "modified", "deleted", "type_changed", "mode_changed"]),
      binary: v.boolean(),
      old_mode: v.optional(text),
      new_mode: v.optional(text),
      additions: count,
      deletions: count,
    }),
  ),
  summary: v.strictObject({ files_changed: count, additions: count, deletions: count, binary_files: count }),
  /** the patch stops before the end (max_bytes) */
  truncated: v.boolean(),
  /** the files list stops before the end (summary still counts all) */
  files_truncated: v.boolean(),
  /** workspace files whose content had to be read this time */
  files_hashed: count,
});

/** Sent as a JSON event on a shell.open stream once the shell runs. */
export const ShellStarted = v.strictObject({
  type: v.literal("started"),
  /** the shell's pid (its session and process group) */
  pid: posInt,
  /** as users see it: /workspace/... */
  cwd: text,
});
/** The end of a shell.open stream: how the shell ended. */
export const ShellOpenResult = v.strictObject({
  exit_code: v.nullable(v.pipe(v.number(), v.integer())),
  signal: v.nullable(text),
});
export const ShellWriteResult = v.strictObject({ bytes: count });
/** the process group signalled */
export const ShellSignalResult = v.strictObject({ pgid: posInt });
export const ShellResizeResult = v.strictObject({ cols: posInt, rows: posInt });
export const ShellCloseResult = v.strictObject({ closed: v.literal(true) });
export const SecretsSetResult = v.strictObject({ count: posInt });

/** JSON events of a service.start stream, in this order: started, then ready or not_ready. */
export const ServiceEvent = v.variant("type", [
  v.strictObject({ type: v.literal("started"), pid: posInt }),
  v.strictObject({ type: v.literal("ready") }),
  /** the probe did not pass in time (reason: the last probe's failure); the group is being stopped */
  v.strictObject({ type: v.literal("not_ready"), reason: text }),
]);
/** The end of a service.start stream: how the run ended. */
export const ServiceStartResult = v.strictObject({
  exit_code: v.nullable(v.pipe(v.number(), v.integer())),
  signal: v.nullable(text),
  /** the readiness verdict was `ready` */
  ready: v.boolean(),
});
/** `stopped` is false when no run of that name was going. */
export const ServiceStopResult = v.strictObject({ stopped: v.boolean() });

/** sys.keep: how many of the named sessions run and are now kept across this connection's close. */
export const SysKeepResult = v.strictObject({ kept: count });
export const SysReleaseResult = v.strictObject({ ended: count });
/** The first event of an adopt stream. */
export const SessionAdopted = v.strictObject({
  type: v.literal("adopted"),
  /** the session's process (group) */
  pid: posInt,
  /** output bytes dropped while no connection held it (the oldest) */
  dropped_bytes: count,
  /** the session already ended; its result follows what was kept */
  ended: v.boolean(),
});

/** The end of a net.connect stream: the connection closed, cleanly or by a reset. */
export const NetConnectResult = v.strictObject({
  /** bytes written to the guest's connection */
  bytes_in: count,
  /** bytes read from it */
  bytes_out: count,
  /** it ended by an error or a reset rather than both sides closing */
  reset: v.boolean(),
});

/** The terminal frame of a failed stream (any op). */
export const ErrorMessage = v.object({
  type: v.literal("error"),
  code: v.picklist(ERROR_CODES),
  message: v.string(),
  details: v.optional(v.record(v.string(), v.unknown())),
  /** what the user can do about it (shown by the CLI, carried by MCP results) */
  hint: v.optional(v.string()),
});

// ---------------------------------------------------------------------------------------
// The table

/**
 * Every agent op: its request, its result, and for exec the JSON events the agent sends on
 * the stream and the control messages the host may send on it. Adding a message = one entry
 * here + a `case` in guest/server.ts (a test fails until both exist and the snapshot is
 * regenerated).
 */
export const MESSAGE_TABLE = {
  hello: { request: HelloRequest, result: HelloResult },
  ping: { request: PingRequest, result: PingResult },
  "clock.set": { request: ClockSetRequest, result: ClockSetResult },
  info: { request: InfoRequest, result: InfoResult },
  shutdown: { request: ShutdownRequest, result: ShutdownResult },
  "sys.attach": { request: SysAttachRequest, result: SysAttachResult },
  exec: { request: ExecRequest, result: ExecResult, events: ExecStarted, control: SignalMessage },
  "exec.kill": { request: ExecKillRequest, result: ExecKillResult },
  "fs.stat": { request: FsStatRequest, result: FileStat },
  "fs.list": { request: FsListRequest, result: FsListResult },
  "fs.read": { request: FsReadRequest, result: FsReadResult },
  "fs.write": { request: FsWriteRequest, result: FileStat },
  "fs.mkdir": { request: FsMkdirRequest, result: FileStat },
  "fs.remove": { request: FsRemoveRequest, result: FsRemoveResult },
  "fs.move": { request: FsMoveRequest, result: FsMoveResult },
  "archive.import": { request: ArchiveImportRequest, result: ArchiveImportResult },
  "archive.export": { request: ArchiveExportRequest, result: ArchiveExportResult },
  "patch.apply": { request: PatchApplyRequest, result: PatchApplyResult },
  "baseline.capture": { request: BaselineCaptureRequest, result: BaselineCaptureResult },
  "fs.freeze": { request: FsFreezeRequest, result: FsFreezeResult },
  "fs.thaw": { request: FsThawRequest, result: FsThawResult },
  diff: { request: DiffRequest, result: DiffResult },
  "shell.open": { request: ShellOpenRequest, result: ShellOpenResult, events: ShellStarted },
  "shell.write": { request: ShellWriteRequest, result: ShellWriteResult },
  "shell.signal": { request: ShellSignalRequest, result: ShellSignalResult },
  "shell.resize": { request: ShellResizeRequest, result: ShellResizeResult },
  "shell.close": { request: ShellCloseRequest, result: ShellCloseResult },
  "net.connect": {
    request: NetConnectRequest,
    result: NetConnectResult,
    events: NetEvent,
    control: NetControl,
  },
  "secrets.set": { request: SecretsSetRequest, result: SecretsSetResult },
  "service.start": { request: ServiceStartRequest, result: ServiceStartResult, events: ServiceEvent },
  "service.stop": { request: ServiceStopRequest, result: ServiceStopResult },
  "sys.keep": { request: SysKeepRequest, result: SysKeepResult },
  "sys.release": { request: SysReleaseRequest, result: SysReleaseResult },
  "shell.adopt": {
    request: ShellAdoptRequest,
    result: ShellOpenResult,
    events: v.union([SessionAdopted, ShellStarted]),
  },
  "service.adopt": {
    request: ServiceAdoptRequest,
    result: ServiceStartResult,
    events: v.union([SessionAdopted, ServiceEvent]),
  },
  "exec.adopt": {
    request: ExecAdoptRequest,
    result: ExecResult,
    events: v.union([SessionAdopted, ExecStarted]),
    control: SignalMessage,
  },
} as const;

export type AgentOp = keyof typeof MESSAGE_TABLE;
export const AGENT_OPS = Object.keys(MESSAGE_TABLE) as AgentOp[];

/** Any agent request, discriminated by `op` (derived from MESSAGE_TABLE). */
export const Request = v.variant(
  "op",
  Object.values(MESSAGE_TABLE).map((m) => m.request),
);
export type Request = v.InferOutput<typeof Request>;
export type RequestOp = Request["op"];
