/** Input fields shared by several operations, each described once (for --help and the model). */
import * as v from "valibot";
import { AUTO_PAUSE_MAX_SECONDS, AUTO_PAUSE_MIN_SECONDS } from "../manager/auto-pause.ts";
import { READ_MAX_BYTES } from "../protocol/limits.ts";

export const environment = v.pipe(
  v.string(),
  v.minLength(1),
  v.description("Environment to boot, e.g. debian:12 (see `pyro env list`)."),
);
export const workspaceRef = v.pipe(
  v.string(),
  v.minLength(1),
  v.description("Workspace id (ws_...) or its unique name."),
);
export const command = v.pipe(
  v.union([v.pipe(v.string(), v.minLength(1)), v.pipe(v.array(v.string()), v.minLength(1))]),
  v.description(
    "Command to run: a string is run by /bin/sh -c in the guest; an array is run directly. Working directory: /workspace.",
  ),
);
export const timeoutSeconds = v.pipe(
  v.number(),
  v.gtValue(0),
  v.maxValue(86400),
  v.description(
    "Kill the command (whole process group) after this many seconds; the result then has timed_out: true and exit_code 124. Default 30.",
  ),
);
export const vcpuCount = v.pipe(
  v.number(),
  v.integer(),
  v.minValue(1),
  v.maxValue(32),
  v.description("Virtual CPUs (default 1)."),
);
export const memMib = v.pipe(
  v.number(),
  v.integer(),
  v.minValue(128),
  v.maxValue(65536),
  v.description("Guest memory in MiB (default 1024)."),
);
/** The longest ttl_seconds accepted: 30 days. */
export const TTL_MAX_SECONDS = 30 * 86400;
export const ttlSeconds = v.pipe(
  v.number(),
  v.integer(),
  v.minValue(0),
  v.maxValue(TTL_MAX_SECONDS),
  v.description(
    "Delete the workspace this many seconds after creation, whether it is running or stopped (default 600; 0 = never; at most 2592000 = 30 days).",
  ),
);
export const autoPauseAfterSeconds = v.pipe(
  v.number(),
  v.integer(),
  v.minValue(0),
  v.maxValue(AUTO_PAUSE_MAX_SECONDS),
  v.check(
    (n) => n === 0 || n >= AUTO_PAUSE_MIN_SECONDS,
    `must be 0 (off) or ${AUTO_PAUSE_MIN_SECONDS}..${AUTO_PAUSE_MAX_SECONDS}`,
  ),
  v.description(
    `Pause the workspace (its memory saved to disk and its RAM freed, as workspace_pause does) after this many seconds without activity; the next operation that needs the machine (exec, file, diff, shell, service...) resumes it first, and status shows paused_by/resumed_by. Activity: any call that reaches the machine; status and list do not count. It is never paused while a call runs, a shell's process runs, a service runs, a detached exec runs or a port is published (work in progress counts as activity); background processes started by exec are frozen and continue on resume. 0 = off (the default); else ${AUTO_PAUSE_MIN_SECONDS}..${AUTO_PAUSE_MAX_SECONDS}. Needs a VM backend that can pause (QEMU, Firecracker).`,
  ),
);
export const allowHostCompat = v.pipe(
  v.boolean(),
  v.description(
    "Allow running WITHOUT a VM (no isolation) when no guest backend or environment is available.",
  ),
);
export const maxOutputBytes = v.pipe(
  v.number(),
  v.integer(),
  v.minValue(0),
  v.maxValue(64 * 1024 * 1024),
  v.description(
    "Keep at most this many bytes of stdout and of stderr (default 1048576; over MCP at most 4194304, the response budget); the rest is dropped and flagged *_truncated. Output that is not UTF-8 comes back base64 with stdout_encoding/stderr_encoding: base64.",
  ),
);
export const name = v.pipe(v.string(), v.description("Unique lowercase name: [a-z0-9][a-z0-9._-]{0,62}."));
export const labels = v.pipe(
  v.record(v.string(), v.string()),
  v.description("Labels as key/value pairs (CLI: --label K=V, repeatable)."),
);
export const networkPolicy = v.pipe(
  v.picklist(["off", "egress", "egress+published-ports"]),
  v.description("Network access: off (default), egress (outbound through user-mode NAT)."),
);
export const allowHosts = v.pipe(
  v.array(v.string()),
  v.description(
    "Egress allow-list: DNS names the guest may connect to (resolved by pyro at each boot and when the guest looks them up; CLI: --allow-host, repeatable). With an allow-list the guest reaches only listed destinations; private, loopback, link-local and metadata addresses only when listed inside those ranges. Implies network_policy egress (vm_run: network). Needs pyro running as root with nftables and a guest backend.",
  ),
);
export const allowCidrs = v.pipe(
  v.array(v.string()),
  v.description(
    "Egress allow-list: IPv4 addresses or networks the guest may connect to, e.g. 203.0.113.7 or 198.51.100.0/24 (CLI: --allow-cidr, repeatable). See allow_hosts.",
  ),
);
export const workspacePath = v.pipe(
  v.string(),
  v.minLength(1),
  v.description("Path under /workspace: absolute (/workspace/src/a.py) or relative to /workspace."),
);
export const maxReadBytes = v.pipe(
  v.number(),
  v.integer(),
  v.minValue(1),
  v.maxValue(READ_MAX_BYTES),
  v.description("Most bytes to return (default 65536, max 16 MiB; over MCP at most 6 MiB)."),
);
export const recursive = v.pipe(
  v.boolean(),
  v.description("Descend into subdirectories (never through symlinks)."),
);
/**
 * Secrets (src/manager/secrets.ts). Values are not checked by the schema (a schema error
 * would echo them): the manager checks them and names only the secret in its errors.
 */
const secretName = v.pipe(
  v.string(),
  v.description("Secret name: letters, digits and _, not starting with a digit, at most 64 characters."),
);
export const secrets = v.pipe(
  v.array(
    v.union([
      v.strictObject({
        name: secretName,
        value: v.pipe(v.string(), v.description("The value (1..65536 bytes of text, no NUL).")),
      }),
      v.strictObject({
        name: secretName,
        file_path: v.pipe(
          v.string(),
          v.description(
            "Host file holding the value (one trailing newline is dropped; over MCP only under a root granted with --allow-host-path).",
          ),
        ),
      }),
    ]),
  ),
  v.description(
    "Secrets for commands in this workspace, each a literal value or a host file (CLI: --secret NAME=VALUE, --secret-file NAME=PATH, repeatable). Values are kept sealed on the host, put on a tmpfs in the guest (/run/pyro/secrets/NAME, outside /workspace), given to a command only through secret_env, and redacted as [REDACTED:NAME] from every output, log and error pyro shows. At most 32 secrets, 64 KiB each, 128 KiB in all.",
  ),
);
export const secretEnv = v.pipe(
  v.record(v.string(), v.string()),
  v.description(
    'Secrets to put in the environment: {SECRET_NAME: "ENV_VAR"} (CLI: --secret-env NAME or NAME=ENV_VAR, repeatable). Output that contains a value shows [REDACTED:NAME] instead.',
  ),
);
