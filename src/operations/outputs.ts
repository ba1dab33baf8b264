/**
 * Result shapes of the operations, written once. Each operation's record points at one of
 * these as its `output`; `invoke()` checks every result against it before any face (CLI
 * --json, SDK, MCP structuredContent) sees it, the MCP server publishes it as the tool's
 * `outputSchema`, and the SDK's method types are inferred from it.
 *
 * Invariants: every object is strict (a field added to a result without being declared here
 * fails the test suites, so the contract cannot drift silently); field names are snake_case;
 * `v.description` says what a field means where the name alone does not.
 */
import * as v from "valibot";

const str = v.string();
const int = v.pipe(v.number(), v.integer());
const bool = v.boolean();
const time = v.pipe(v.string(), v.description("ISO 8601 time."));

export const backend = v.picklist(["firecracker", "qemu", "host"]);
export const accelerator = v.nullable(v.picklist(["kvm", "tcg"]));
export const executionMode = v.picklist(["guest", "host_compat"]);
export const encoding = v.picklist(["utf8", "base64"]);

const where = {
  execution_mode: executionMode,
  backend,
  accelerator,
};

export const workspaceRecord = v.strictObject({
  workspace_id: str,
  name: v.nullable(str),
  labels: v.record(str, str),
  environment: str,
  state: v.picklist(["created", "started", "stopped", "paused"]),
  created_at: time,
  last_activity_at: time,
  expires_at: v.nullable(time),
  ...where,
  network_policy: v.picklist(["off", "egress", "egress+published-ports"]),
  allow_hosts: v.pipe(
    v.array(str),
    v.description("Egress allow-list: host names (resolved on the host at each boot); empty: no allow-list."),
  ),
  allow_cidrs: v.pipe(
    v.array(str),
    v.description("Egress allow-list: IPv4 networks (normalised, e.g. 203.0.113.7/32)."),
  ),
  workspace_seed: v.strictObject({
    origin_kind: v.picklist(["empty", "directory", "tar_archive", "project"]),
    origin_ref: v.pipe(
      v.nullable(str),
      v.description(
        "The seed's host path; for a project seed `<project root or repository URL>@<HEAD commit>`.",
      ),
    ),
    skipped: v.optional(
      v.pipe(
        v.array(
          v.strictObject({
            path: str,
            reason: v.picklist(["missing", "submodule", "unreadable", "not a regular file"]),
          }),
        ),
        v.description(
          "Project seeds only, when some tracked paths could not be seeded: the first 100 of them and why.",
        ),
      ),
    ),
    skipped_count: v.optional(
      v.pipe(int, v.description("How many tracked paths the project seed left out (with skipped).")),
    ),
  }),
  vcpu_count: int,
  mem_mib: int,
  ttl_seconds: int,
  secrets: v.pipe(
    v.array(str),
    v.description("Names of the workspace's secrets (values are never shown; use them with secret_env)."),
  ),
  stop_reason: v.nullable(str),
  agent_unresponsive_since: v.pipe(
    v.nullable(time),
    v.description(
      "Set while the guest agent does not answer: calls fail with AGENT_UNRESPONSIVE until it answers again or the workspace is stopped and started.",
    ),
  ),
  vm_status: v.pipe(
    v.nullable(str),
    v.description(
      "Set with agent_unresponsive_since when the VMM has halted the guest: io-error (the VM is paused on a host I/O error, e.g. the host disk holding the workspace is full; free space, then stop and start), guest-panicked, internal-error or shutdown. Calls fail with IO_ERROR or VMM_FAILED naming it.",
    ),
  ),
  command_count: int,
  reset_at: v.nullable(time),
  auto_pause_after_seconds: v.pipe(
    v.nullable(int),
    v.description(
      "Pause the workspace after this many seconds without activity (set at create or with workspace_update); null: never. The next operation that needs the machine resumes it.",
    ),
  ),
  paused_by: v.pipe(
    v.nullable(v.picklist(["request", "idle"])),
    v.description(
      'What paused it last: "request" (workspace_pause) or "idle" (auto_pause_after_seconds); null if it never was.',
    ),
  ),
  resumed_at: v.pipe(
    v.nullable(time),
    v.description("When it was last resumed from a pause; null if never."),
  ),
  resumed_by: v.pipe(
    v.nullable(str),
    v.description(
      "What resumed it last: workspace_resume, or the operation that needed the paused machine (e.g. workspace_exec) and resumed it first.",
    ),
  ),
  boot: v.pipe(
    v.nullable(v.picklist(["template", "cold", "memory"])),
    v.description(
      "How the machine last came up: `template` (restored from the environment's VM template), `cold` (a full boot), `memory` (resumed from a pause); null in host compat and before the first boot.",
    ),
  ),
  boot_note: v.pipe(
    v.nullable(str),
    v.description(
      "Why a guest machine booted cold (no template yet, a stale one, PYRO_TEMPLATES=off, ...); null otherwise.",
    ),
  ),
});

const execFields = {
  exit_code: int,
  stdout: v.pipe(str, v.description("Captured stdout (base64 when stdout_encoding is base64).")),
  stderr: v.pipe(str, v.description("Captured stderr (base64 when stderr_encoding is base64).")),
  stdout_truncated: bool,
  stderr_truncated: bool,
  stdout_encoding: v.pipe(encoding, v.description("utf8, or base64 when stdout is not UTF-8 text.")),
  stderr_encoding: v.pipe(encoding, v.description("utf8, or base64 when stderr is not UTF-8 text.")),
  timed_out: bool,
  duration_ms: v.number(),
  ...where,
};
export const execResult = v.strictObject(execFields);
/** `run`: an exec result plus how its disposable machine came up. */
export const runResult = v.strictObject({
  ...execFields,
  boot: v.pipe(
    v.nullable(v.picklist(["template", "cold"])),
    v.description(
      "How the disposable machine came up: `template` (restored from the environment's VM template), `cold` (a full boot); null in host compat.",
    ),
  ),
  boot_note: v.pipe(
    v.nullable(str),
    v.description(
      "Why the machine booted cold (PYRO_TEMPLATES=off, no template for this machine shape, the restore failed, ...); null otherwise.",
    ),
  ),
});
export const workspaceExecResult = v.strictObject({ workspace_id: str, ...execFields });

export const fileStat = v.strictObject({
  path: str,
  artifact_type: v.picklist(["file", "directory", "symlink", "other"]),
  size_bytes: int,
  mode: str,
  mtime: time,
  link_target: v.optional(str),
});

export const fileListing = v.strictObject({
  workspace_id: str,
  path: str,
  entries: v.array(fileStat),
  truncated: bool,
});

export const fileContent = v.strictObject({
  workspace_id: str,
  path: str,
  size_bytes: int,
  bytes_read: int,
  truncated: bool,
  encoding,
  content: str,
});

const diffFile = v.strictObject({
  path: str,
  status: str,
  binary: bool,
  additions: int,
  deletions: int,
  old_path: v.optional(str),
  old_mode: v.optional(str),
  new_mode: v.optional(str),
});
const diffSummary = v.strictObject({
  files_changed: int,
  additions: int,
  deletions: int,
  binary_files: int,
});

export const diffResult = v.strictObject({
  workspace_id: str,
  patch: v.pipe(str, v.description("Unified patch of the text changes (empty when nothing changed).")),
  files: v.array(diffFile),
  summary: diffSummary,
  truncated: v.pipe(bool, v.description("The patch text was cut at max_bytes.")),
  files_truncated: v.pipe(bool, v.description("The file list was cut (too many changed files).")),
  files_hashed: v.pipe(int, v.description("Files whose content had to be hashed (stat cache misses).")),
});

export const fileWritten = v.strictObject({
  workspace_id: str,
  ...fileStat.entries,
  bytes_written: int,
});

export const patchApplied = v.strictObject({
  workspace_id: str,
  files: v.array(v.strictObject({ path: str, status: str, old_path: v.optional(str) })),
  hunks_applied: int,
  files_truncated: bool,
});

export const syncPushed = v.strictObject({
  workspace_id: str,
  path: str,
  kind: v.picklist(["directory", "tar_archive"]),
  files: int,
  directories: int,
  symlinks: int,
  bytes: int,
});

const exportEntry = {
  path: str,
  output: v.pipe(str, v.description("The host path written.")),
  artifact_type: v.picklist(["file", "directory", "symlink"]), // a symlink is exported as a link, never followed
  bytes: int,
  exported_at: time,
};
export const exported = v.strictObject({ workspace_id: str, ...exportEntry });

const snapshotInfo = v.strictObject({
  name: str,
  created_at: v.pipe(str, v.description("ISO 8601 time (empty for an unseeded baseline).")),
  size_bytes: int,
  kind: v.picklist(["baseline", "named"]),
  format: v.pipe(
    v.picklist(["disk_image", "tar"]),
    v.description(
      "disk_image: a copy of the workspace's data disk (guest backends); tar: /workspace as a tar (host compat, and snapshots taken by an older pyro).",
    ),
  ),
});
export const snapshotCreated = v.strictObject({ workspace_id: str, ...snapshotInfo.entries });
export const snapshotList = v.strictObject({
  workspace_id: str,
  snapshots: v.array(snapshotInfo),
  count: int,
});
export const snapshotDeleted = v.strictObject({ workspace_id: str, name: str, deleted: v.literal(true) });

export const resetResult = v.strictObject({
  ...workspaceRecord.entries,
  restored_from: v.pipe(str, v.description('"baseline" or the snapshot name.')),
});

export const pauseResult = v.strictObject({
  ...workspaceRecord.entries,
  memory_bytes: v.pipe(int, v.description("Size of the saved machine state (RAM + devices) on the host.")),
});

export const resumeResult = v.strictObject({
  ...workspaceRecord.entries,
  resumed_from: v.pipe(
    v.picklist(["memory", "cold_boot", "already_running"]),
    v.description(
      '"memory": processes continue where they were; "cold_boot": the saved state could not be used (see note) and the machine booted from its disk; "already_running": nothing to do.',
    ),
  ),
  note: v.pipe(v.nullable(str), v.description("Why the saved state was not used, for a cold boot.")),
});

const historyEntry = v.strictObject({
  seq: int,
  command: v.nullable(str),
  argv: v.nullable(v.array(str)),
  cwd: v.nullable(str),
  started_at: time,
  exit_code: int,
  timed_out: bool,
  duration_ms: v.number(),
});

export const logsResult = v.strictObject({
  workspace_id: str,
  entries: v.array(historyEntry),
  count: int,
  console_tail: str,
  network_refusals: v.pipe(
    v.array(
      v.strictObject({
        destination: str,
        protocol: v.pipe(str, v.description('"tcp", "udp", "icmp"...')),
        port: v.pipe(v.nullable(int), v.description("TCP/UDP destination port; null for other protocols.")),
        packets: v.pipe(
          int,
          v.description("Packets refused to this destination since the workspace was created."),
        ),
      }),
    ),
    v.description(
      "Connections the egress allow-list refused (tap networks only; empty otherwise), one entry per destination.",
    ),
  ),
});

export const summaryResult = v.strictObject({
  workspace_id: str,
  workspace: workspaceRecord,
  since: time,
  commands: v.strictObject({
    count: int,
    failed: int,
    timed_out: int,
    recent: v.array(historyEntry),
  }),
  changes: v.nullable(v.strictObject({ files: v.array(diffFile), summary: diffSummary })),
  exports: v.array(v.strictObject(exportEntry)),
  snapshots: v.array(snapshotInfo),
  services: v.array(v.record(str, v.unknown())),
});

/** A workspace whose record cannot be read: listed so it can be found and deleted. */
const corruptListing = v.strictObject({
  workspace_id: str,
  name: v.nullable(str),
  state: v.literal("corrupt"),
  corrupt_reason: str,
  running: v.pipe(bool, v.description("A process of this workspace (supervisor or VM) is still running.")),
});

const runningServices = v.pipe(int, v.description("Services starting or ready (0 unless started)."));
export const workspaceList = v.strictObject({
  workspaces: v.array(
    v.union([v.strictObject({ ...workspaceRecord.entries, services: runningServices }), corruptListing]),
  ),
  count: int,
});
export const workspaceDeleted = v.strictObject({ workspace_id: str, deleted: v.literal(true) });

export const diskExported = v.strictObject({
  workspace_id: str,
  output: v.pipe(str, v.description("The host file written.")),
  size_bytes: v.pipe(int, v.description("Apparent size of the image.")),
  allocated_bytes: v.pipe(int, v.description("Bytes the sparse copy occupies on the host.")),
  scrubbed: v.array(v.strictObject({ dir: str, removed: int })),
});

export const doctorResult = v.strictObject({
  ok: bool,
  checks: v.array(
    v.strictObject({
      name: str,
      ok: bool,
      detail: str,
      hint: v.nullable(str),
      warning: v.optional(
        v.pipe(bool, v.description("Passed, but something deserves attention (detail says what).")),
      ),
    }),
  ),
  pyro_home: str,
});

export const prepareResult = v.strictObject({
  environment: str,
  backend,
  accelerator,
  template: v.pipe(
    v.nullable(
      v.strictObject({
        status: v.picklist(["ready", "missing", "stale", "broken", "off"]),
        reason: v.nullable(str),
      }),
    ),
    v.description(
      "The environment's VM template for the default machine shape (QEMU only; null otherwise): ready, or why not (workspaces then boot cold).",
    ),
  ),
  boot: v.pipe(
    v.nullable(v.picklist(["template", "cold", "memory"])),
    v.description("How the throwaway workspace's machine came up."),
  ),
  steps: v.array(v.strictObject({ step: str, ms: v.number() })),
  ok: v.literal(true),
});

const fileEntry = v.record(str, v.unknown());
const manifest = v.strictObject({
  name: str,
  version: str,
  kernel: fileEntry,
  rootfs: fileEntry,
  agent_version: str,
  agent_sha256: v.optional(str),
  init_sha256: v.optional(str),
  protocol_version: int,
  built_at: time,
  packages: v.array(str),
  custom: v.optional(bool),
  source: v.optional(
    v.strictObject({ kind: v.picklist(["image", "archive", "recipe"]), ref: str, digest: str }),
  ),
  image: v.optional(
    v.strictObject({
      env: v.array(str),
      working_dir: v.nullable(str),
      user: v.nullable(str),
      entrypoint: v.array(str),
      cmd: v.array(str),
    }),
  ),
});
const recipe = v.record(str, v.unknown());

export const environmentList = v.strictObject({
  environments: v.array(
    v.strictObject({
      name: str,
      description: str,
      packages: v.array(str),
      installed: bool,
      version: v.nullable(str),
      default: bool,
      custom: v.pipe(
        bool,
        v.description("Made by `env create` from an image or a recipe, not in the catalog."),
      ),
      source: v.pipe(
        v.nullable(str),
        v.description("Where a custom environment came from (image reference, archive or recipe file)."),
      ),
    }),
  ),
  count: int,
});
export const environmentInspected = v.strictObject({
  name: str,
  recipe: v.nullable(recipe),
  installed: bool,
  dir: v.nullable(str),
  manifest: v.nullable(manifest),
  verified: v.nullable(bool),
  problem: v.nullable(str),
});
export const environmentInstalled = v.strictObject({ name: str, dir: str, manifest });
export const environmentPushed = v.strictObject({ digest: str, ref: str });
export const environmentsPruned = v.strictObject({ removed: v.array(str), count: int });

// ---- host onramps (pyro host ...) ----
const hostId = v.picklist(["claude-code", "codex", "opencode"]);
const hostRegistration = v.strictObject({
  command: v.pipe(str, v.description("The executable the client starts (this pyro, by absolute path).")),
  args: v.array(str),
});
export const hostConnected = v.strictObject({
  host: hostId,
  command: v.pipe(v.array(str), v.description("The client's own registration command (argv).")),
  command_line: v.pipe(str, v.description("The same, quoted for a POSIX shell.")),
  ran: v.pipe(
    bool,
    v.description("The command was run (the client's CLI is on PATH and --print was not given)."),
  ),
  cli: v.pipe(v.nullable(str), v.description("The client's CLI found on PATH.")),
  output: v.pipe(v.nullable(str), v.description("What the client's command printed, when it ran.")),
  config_file: v.pipe(str, v.description("Where the client keeps the registration.")),
  registration: hostRegistration,
});
export const hostConfigPrinted = v.strictObject({
  host: hostId,
  text: v.pipe(
    str,
    v.description("The config file's text with pyro's entry (all of it, as written or to paste)."),
  ),
  output: v.pipe(v.nullable(str), v.description("The file written (absolute), or null when only printed.")),
  merged: v.pipe(bool, v.description("The file existed and pyro's entry was merged into it.")),
  registration: hostRegistration,
});
const hostCheckedRegistration = v.strictObject({
  path: str,
  scope: v.pipe(str, v.description('"user", or "project:/abs/dir" (Claude Code\'s local scope).')),
  command: str,
  args: v.array(str),
  status: v.picklist(["ok", "other_pyro", "stale"]),
  detail: str,
});
export const hostDoctorResult = v.strictObject({
  ok: v.pipe(bool, v.description("No client has a stale or unreadable registration.")),
  pyro: v.pipe(v.array(str), v.description("How this pyro is started (what registrations should name).")),
  hosts: v.array(
    v.strictObject({
      host: hostId,
      installed: v.pipe(
        bool,
        v.description("The client's CLI is on PATH or one of its config files exists."),
      ),
      cli: v.nullable(str),
      config_files: v.pipe(
        v.array(str),
        v.description("The client's config files that exist (all were read)."),
      ),
      status: v.picklist(["ok", "other_pyro", "stale", "unreadable", "not_registered", "not_installed"]),
      detail: str,
      hint: v.nullable(str),
      registrations: v.array(hostCheckedRegistration),
    }),
  ),
});
export const hostRepaired = v.strictObject({
  host: hostId,
  repaired: v.array(
    v.strictObject({ path: str, scope: str, before: hostRegistration, after: hostRegistration }),
  ),
  unchanged: v.pipe(int, v.description("Registrations that already started this pyro.")),
});

/** One detached exec (src/manager/detached.ts): workspace_exec with detach, exec_wait/kill/list. */
export const detachedExec = v.strictObject({
  workspace_id: str,
  exec_id: v.pipe(str, v.description("The detached exec's id (ex_...), for exec_read/exec_wait/exec_kill.")),
  state: v.pipe(
    v.picklist(["running", "exited", "lost"]),
    v.description(
      "running; exited (exit_code says how); lost: the command ended with its machine (workspace stopped, supervisor died), end_reason says why, exit_code is null.",
    ),
  ),
  command: v.nullable(str),
  argv: v.nullable(v.array(str)),
  cwd: v.nullable(str),
  idempotency_key: v.nullable(str),
  reused: v.optional(
    v.pipe(
      bool,
      v.description(
        "Start only: true when idempotency_key named an exec that already existed (nothing was run).",
      ),
    ),
  ),
  signalled: v.optional(
    v.pipe(bool, v.description("exec_kill only: the signal was sent to a running command.")),
  ),
  started_at: time,
  ended_at: v.nullable(time),
  exit_code: v.nullable(int),
  signal: v.nullable(str),
  timed_out: bool,
  duration_ms: v.nullable(v.number()),
  end_reason: v.nullable(str),
  stdout_bytes: v.pipe(
    int,
    v.description("stdout bytes spooled so far (exec_read reaches the end at this offset)."),
  ),
  stderr_bytes: v.pipe(int, v.description("stderr bytes spooled so far.")),
  stdout_truncated: v.pipe(bool, v.description("The spool stopped at max_output_bytes (known once ended).")),
  stderr_truncated: bool,
  ...where,
});
/** workspace_exec: the attached result, or with detach the exec started. */
export const workspaceExecOutcome = v.union([workspaceExecResult, detachedExec]);
export const detachedExecList = v.strictObject({
  workspace_id: str,
  execs: v.array(detachedExec),
  count: int,
});
export const execReadResult = v.strictObject({
  workspace_id: str,
  exec_id: str,
  stream: v.picklist(["stdout", "stderr"]),
  data: v.pipe(
    str,
    v.description("The bytes [offset, next_offset): text, or base64 when encoding is base64."),
  ),
  encoding: v.pipe(encoding, v.description("utf8, or base64 when these bytes are not UTF-8 text.")),
  offset: int,
  next_offset: v.pipe(int, v.description("Pass as offset to read on.")),
  eof: v.pipe(bool, v.description("The exec has ended and next_offset is the end of the stream.")),
  size_bytes: v.pipe(int, v.description("Bytes of this stream spooled so far.")),
  state: v.picklist(["running", "exited", "lost"]),
});

// ---- custom environments (env create / env delete) ----
export const environmentDeleted = v.strictObject({
  name: str,
  removed: v.pipe(int, v.description("Installed versions removed.")),
});

// ---- env save / load: an installed environment as one archive (src/env/save.ts) ----
export const environmentSaved = v.strictObject({
  name: str,
  version: str,
  output: v.pipe(str, v.description("Absolute path of the archive written.")),
  digest: v.pipe(str, v.description("Digest of the environment's OCI manifest inside the archive.")),
  size_bytes: int,
});
export const environmentLoaded = v.strictObject({
  name: str,
  dir: str,
  digest: v.pipe(str, v.description("Digest of the OCI manifest that was loaded (every blob verified).")),
  manifest,
});

// ---- shells (src/operations/shell.ts): persistent PTYs, output read by cursor ----
const shellFields = {
  workspace_id: str,
  shell_id: v.pipe(str, v.description("The shell's id (sh_...).")),
  state: v.pipe(
    v.picklist(["running", "exited", "closed"]),
    v.description("running; exited (ended by itself: still readable until closed); closed."),
  ),
  cwd: v.pipe(str, v.description("Where the shell started (/workspace/...).")),
  cols: int,
  rows: int,
  started_at: time,
  ended_at: v.nullable(time),
  exit_code: v.nullable(int),
  output_chars: v.pipe(
    int,
    v.description("The end of the output so far: the cursor a read of new output starts at."),
  ),
};
export const shellInfo = v.strictObject(shellFields);
export const shellRead = v.strictObject({
  ...shellFields,
  output: v.pipe(
    str,
    v.description(
      "Output from cursor to next_cursor: raw terminal bytes as text, or the rendered screen text when plain.",
    ),
  ),
  cursor: v.pipe(int, v.description("Where output starts (later than asked when older output was dropped).")),
  next_cursor: v.pipe(int, v.description("Pass as cursor to read on.")),
  truncated: v.pipe(
    bool,
    v.description(
      "Output between the cursor asked for and cursor was dropped (each shell keeps its last 4 Mi characters).",
    ),
  ),
  has_more: v.pipe(
    bool,
    v.description("More output is waiting past next_cursor (max_chars stopped this read)."),
  ),
  plain: bool,
});
export const shellWritten = v.strictObject({ ...shellFields, input_chars: int });
export const shellSignalled = v.strictObject({ ...shellFields, signal_name: str });
export const shellList = v.strictObject({
  workspace_id: str,
  shells: v.array(v.strictObject(shellFields)),
  count: int,
});
/** workspace_status: the record plus what only the running supervisor knows. */
export const workspaceStatus = v.strictObject({
  ...workspaceRecord.entries,
  shells: v.pipe(
    v.nullable(int),
    v.description(
      "Shells kept by the workspace (0 unless started; null when its supervisor could not be asked).",
    ),
  ),
  services: runningServices,
});

// ---- services (src/operations/service.ts): supervised processes with readiness ----
const port = v.pipe(int, v.minValue(1), v.maxValue(65535));
export const serviceReadiness = v.variant("type", [
  v.strictObject({ type: v.literal("file"), path: str }),
  v.strictObject({ type: v.literal("tcp"), port }),
  v.strictObject({ type: v.literal("http"), url: str }),
  v.strictObject({ type: v.literal("command"), command: str }),
]);
const serviceFields = {
  workspace_id: str,
  service_name: str,
  state: v.pipe(
    v.picklist(["starting", "ready", "failed", "exited", "stopped"]),
    v.description(
      "starting (probing readiness, or waiting to restart); ready; failed (never ready in time, or gave up restarting); exited (ended by itself); stopped (service_stop, or the workspace stopped/reset). end_reason says why.",
    ),
  ),
  command: v.nullable(str),
  argv: v.nullable(v.array(str)),
  cwd: v.nullable(str),
  readiness: v.nullable(serviceReadiness),
  ready_timeout_seconds: v.number(),
  ready_interval_ms: int,
  restart: v.picklist(["no", "on-failure"]),
  published_ports: v.pipe(
    v.array(v.strictObject({ guest_port: port, host_port: port, host: v.literal("127.0.0.1") })),
    v.description("Host ports forwarded to the service while it is ready (127.0.0.1 only)."),
  ),
  started_at: time,
  ready_at: v.nullable(time),
  ended_at: v.nullable(time),
  exit_code: v.nullable(int),
  signal: v.nullable(str),
  restart_count: v.pipe(int, v.description("Restarts so far (restart on-failure).")),
  end_reason: v.nullable(str),
  stdout_bytes: v.pipe(
    int,
    v.description("stdout bytes logged so far (the offset a read reaches the end at)."),
  ),
  stderr_bytes: int,
};
export const serviceInfo = v.strictObject(serviceFields);
export const serviceList = v.strictObject({
  workspace_id: str,
  services: v.array(serviceInfo),
  count: int,
});
export const serviceLogs = v.strictObject({
  workspace_id: str,
  service_name: str,
  state: serviceFields.state,
  stdout: v.pipe(str, v.description("The tail of stdout, or with offset the bytes read (stream stdout).")),
  stderr: str,
  stdout_bytes: int,
  stderr_bytes: int,
  tail_lines: v.nullable(int),
  stream: v.nullable(v.picklist(["stdout", "stderr"])),
  offset: v.pipe(
    v.nullable(int),
    v.description("With offset: where the bytes start (later than asked when older logs were dropped)."),
  ),
  next_offset: v.pipe(v.nullable(int), v.description("With offset: pass as offset to read on.")),
  truncated: v.pipe(
    bool,
    v.description("Bytes between the offset asked for and offset were dropped by rotation."),
  ),
});
