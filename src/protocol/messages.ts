/**
 * Every message that crosses the wire, written once as strict valibot schemas. The first
 * JSON frame of a stream is a request (`op`); the last frame back is a `result` or an
 * `error` with the END flag. Data frames in between carry raw bytes on a channel.
 * The rendered table is pinned by messages.snapshot.json (see messages.test.ts).
 */
import * as v from "valibot";
import { ERROR_CODES } from "./errors.ts";

const path = v.pipe(v.string(), v.minLength(1), v.maxLength(4096));
const envMap = v.record(v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/)), v.string());
const posInt = v.pipe(v.number(), v.integer(), v.minValue(0));

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
 * /workspace against the baseline. The unified patch comes as channel-1 data frames (UTF-8),
 * then the result: `{ patch_bytes, files: [{ path, status, binary, old_mode?, new_mode?,
 * additions, deletions }], summary: { files_changed, additions, deletions, binary_files },
 * truncated, files_truncated, files_hashed }`. `max_bytes` bounds the patch (whole files only).
 */
export const DiffRequest = v.strictObject({ op: v.literal("diff"), max_bytes: v.optional(posInt) });

export const Request = v.variant("op", [
  HelloRequest,
  PingRequest,
  ClockSetRequest,
  InfoRequest,
  ShutdownRequest,
  ExecRequest,
  ExecKillRequest,
  FsStatRequest,
  FsListRequest,
  FsReadRequest,
  FsWriteRequest,
  FsMkdirRequest,
  FsRemoveRequest,
  FsMoveRequest,
  ArchiveImportRequest,
  ArchiveExportRequest,
  PatchApplyRequest,
  BaselineCaptureRequest,
  DiffRequest,
]);
export type Request = v.InferOutput<typeof Request>;
export type RequestOp = Request["op"];

export const HelloResult = v.object({
  type: v.literal("result"),
  protocol_version: posInt,
  agent_version: v.string(),
  pid1: v.boolean(),
  kernel: v.string(),
  boot_id: v.string(),
  root: v.string(),
});

export const ExecStarted = v.object({ type: v.literal("started"), pid: posInt });
export const ExecResult = v.object({
  type: v.literal("result"),
  exit_code: v.number(),
  signal: v.nullable(v.string()),
  timed_out: v.boolean(),
  stdout_bytes: posInt,
  stderr_bytes: posInt,
  stdout_truncated: v.boolean(),
  stderr_truncated: v.boolean(),
  duration_ms: v.number(),
});
export type ExecResult = v.InferOutput<typeof ExecResult>;

export const ErrorMessage = v.object({
  type: v.literal("error"),
  code: v.picklist(ERROR_CODES),
  message: v.string(),
  details: v.optional(v.record(v.string(), v.unknown())),
  /** what the user can do about it (shown by the CLI, carried by MCP results) */
  hint: v.optional(v.string()),
});

/** The table a snapshot test pins: name → schema. */
export const MESSAGE_TABLE = {
  HelloRequest,
  PingRequest,
  ClockSetRequest,
  InfoRequest,
  ShutdownRequest,
  ExecRequest,
  ExecKillRequest,
  SignalMessage,
  FsStatRequest,
  FsListRequest,
  FsReadRequest,
  FsWriteRequest,
  FsMkdirRequest,
  FsRemoveRequest,
  FsMoveRequest,
  ArchiveImportRequest,
  ArchiveExportRequest,
  PatchApplyRequest,
  BaselineCaptureRequest,
  DiffRequest,
  HelloResult,
  ExecStarted,
  ExecResult,
  ErrorMessage,
} as const;
