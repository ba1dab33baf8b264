/**
 * Profiles and modes: what a chat model sees of the operations table.
 *
 * - A profile picks the operations whose record lists it (`profiles`), and narrows their
 *   input schemas by PROFILE_OMIT: fields named there are left out of every tool of that
 *   profile (the contract: core schemas omit secrets and network policy).
 * - A mode is a task-shaped narrowing of one profile (it implies that profile): the tools it
 *   names, each with the task's description where the mode has one (a plain text file
 *   beside this one, `modes/<mode>/<tool>.txt`, else the operation's own), the fields it
 *   omits (inspect: no network at all), and the server instructions for the task.
 *
 * Invariants (test/mcp-modes.test.ts): every tool a mode names belongs to its profile; every
 * description file belongs to a tool the mode names; omitted fields are optional, so a call
 * without them means the default (network off). Adding a tool to a mode is adding its name
 * here, and its description file if the task needs one.
 *
 * `--mode` and `--profile` together: the mode's profile is implied; giving a different
 * profile is a usage error (INVALID_INPUT), giving the same one is fine.
 */
import type { Profile } from "../operations/types.ts";
import { PyroError } from "../protocol/errors.ts";
import coldStartInstructions from "./modes/cold-start/instructions.txt" with { type: "text" };
import coldStartServiceLogs from "./modes/cold-start/service_logs.txt" with { type: "text" };
import coldStartServiceStart from "./modes/cold-start/service_start.txt" with { type: "text" };
import coldStartCreate from "./modes/cold-start/workspace_create.txt" with { type: "text" };
import coldStartExec from "./modes/cold-start/workspace_exec.txt" with { type: "text" };
import coldStartLogs from "./modes/cold-start/workspace_logs.txt" with { type: "text" };
import coldStartSummary from "./modes/cold-start/workspace_summary.txt" with { type: "text" };
import inspectInstructions from "./modes/inspect/instructions.txt" with { type: "text" };
import inspectRun from "./modes/inspect/vm_run.txt" with { type: "text" };
import inspectCreate from "./modes/inspect/workspace_create.txt" with { type: "text" };
import inspectExec from "./modes/inspect/workspace_exec.txt" with { type: "text" };
import inspectExport from "./modes/inspect/workspace_export.txt" with { type: "text" };
import inspectRead from "./modes/inspect/workspace_file_read.txt" with { type: "text" };
import baseInstructions from "./modes/instructions.txt" with { type: "text" };
import reproInstructions from "./modes/repro-fix/instructions.txt" with { type: "text" };
import reproCreate from "./modes/repro-fix/workspace_create.txt" with { type: "text" };
import reproDiff from "./modes/repro-fix/workspace_diff.txt" with { type: "text" };
import reproExec from "./modes/repro-fix/workspace_exec.txt" with { type: "text" };
import reproExport from "./modes/repro-fix/workspace_export.txt" with { type: "text" };
import reproPatch from "./modes/repro-fix/workspace_patch_apply.txt" with { type: "text" };
import reproReset from "./modes/repro-fix/workspace_reset.txt" with { type: "text" };
import reviewInstructions from "./modes/review-eval/instructions.txt" with { type: "text" };
import reviewShellOpen from "./modes/review-eval/shell_open.txt" with { type: "text" };
import reviewShellRead from "./modes/review-eval/shell_read.txt" with { type: "text" };
import reviewSnapshot from "./modes/review-eval/snapshot_create.txt" with { type: "text" };
import reviewExec from "./modes/review-eval/workspace_exec.txt" with { type: "text" };
import reviewExport from "./modes/review-eval/workspace_export.txt" with { type: "text" };
import reviewReset from "./modes/review-eval/workspace_reset.txt" with { type: "text" };
import reviewSummary from "./modes/review-eval/workspace_summary.txt" with { type: "text" };

export const PROFILES = ["vm-run", "workspace-core", "workspace-full"] as const satisfies readonly Profile[];

/**
 * Input fields a profile leaves out of every tool that has them. Core never offers secrets
 * (`secrets` on workspace_create, `secret_env` on workspace_exec; test/secrets.test.ts).
 */
export const PROFILE_OMIT: Record<Profile, readonly string[]> = {
  "vm-run": [],
  // core has no exec_read/exec_wait, so no detached starts either (workspace-full has both)
  "workspace-core": [
    "network_policy",
    "allow_hosts",
    "allow_cidrs",
    "secrets",
    "secret_env",
    "detach",
    "idempotency_key",
    // core has no workspace_pause/resume, so its workspace_create offers no auto-pause either
    "auto_pause_after_seconds",
  ],
  "workspace-full": [],
};

export interface ModeSpec {
  /** the profile the mode narrows (implied by --mode) */
  profile: Profile;
  /** one line for --help and docs */
  summary: string;
  /** the tools offered, in this order */
  tools: readonly string[];
  /** the task's description of a tool, replacing the operation's own */
  descriptions: Readonly<Record<string, string>>;
  /** input fields left out of every tool (on top of the profile's) */
  omit?: readonly string[];
  /** the MCP `instructions` for the task */
  instructions: string;
}

/** Tools every workspace mode offers: find, look at and remove workspaces. */
const HANDLING = ["workspace_create", "workspace_list", "workspace_status"] as const;

export const MODES = {
  "repro-fix": {
    profile: "workspace-core",
    summary: "reproduce a failure, patch it, rerun, diff, export, reset",
    tools: [
      ...HANDLING,
      "workspace_exec",
      "workspace_sync_push",
      "workspace_file_list",
      "workspace_file_read",
      "workspace_file_write",
      "workspace_patch_apply",
      "workspace_diff",
      "workspace_export",
      "workspace_reset",
      "workspace_summary",
      "workspace_delete",
    ],
    descriptions: {
      workspace_create: reproCreate,
      workspace_exec: reproExec,
      workspace_patch_apply: reproPatch,
      workspace_diff: reproDiff,
      workspace_export: reproExport,
      workspace_reset: reproReset,
    },
    instructions: reproInstructions,
  },
  inspect: {
    profile: "workspace-core",
    summary: "inspect untrusted code offline; export only the report",
    tools: [
      "vm_run",
      ...HANDLING,
      "workspace_file_list",
      "workspace_file_read",
      "workspace_file_write",
      "workspace_exec",
      "workspace_diff",
      "workspace_export",
      "workspace_summary",
      "workspace_delete",
    ],
    descriptions: {
      vm_run: inspectRun,
      workspace_create: inspectCreate,
      workspace_file_read: inspectRead,
      workspace_exec: inspectExec,
      workspace_export: inspectExport,
    },
    // Offline by default and by construction: no tool takes a network option.
    omit: ["network", "network_policy", "allow_hosts", "allow_cidrs"],
    instructions: inspectInstructions,
  },
  "cold-start": {
    profile: "workspace-full",
    summary: "validate a repository from a fresh machine: run its checks, start its services",
    tools: [
      ...HANDLING,
      "workspace_logs",
      "workspace_exec",
      "exec_read",
      "exec_wait",
      "exec_kill",
      "exec_list",
      "service_start",
      "service_list",
      "service_status",
      "service_logs",
      "service_stop",
      "workspace_sync_push",
      "workspace_file_list",
      "workspace_file_read",
      "workspace_file_write",
      "workspace_patch_apply",
      "workspace_diff",
      "workspace_export",
      "workspace_summary",
      "workspace_reset",
      "workspace_delete",
    ],
    descriptions: {
      workspace_create: coldStartCreate,
      workspace_exec: coldStartExec,
      workspace_logs: coldStartLogs,
      service_start: coldStartServiceStart,
      service_logs: coldStartServiceLogs,
      workspace_summary: coldStartSummary,
    },
    instructions: coldStartInstructions,
  },
  "review-eval": {
    profile: "workspace-full",
    summary: "review and evaluate with snapshots and readable shells",
    tools: [
      ...HANDLING,
      "workspace_exec",
      "shell_open",
      "shell_read",
      "shell_write",
      "shell_signal",
      "shell_resize",
      "shell_close",
      "shell_list",
      "exec_read",
      "exec_wait",
      "exec_kill",
      "exec_list",
      "workspace_file_list",
      "workspace_file_read",
      "workspace_diff",
      "snapshot_create",
      "snapshot_list",
      "snapshot_delete",
      "workspace_reset",
      "workspace_summary",
      "workspace_export",
      "workspace_delete",
    ],
    descriptions: {
      snapshot_create: reviewSnapshot,
      shell_open: reviewShellOpen,
      shell_read: reviewShellRead,
      workspace_exec: reviewExec,
      workspace_reset: reviewReset,
      workspace_summary: reviewSummary,
      workspace_export: reviewExport,
    },
    instructions: reviewInstructions,
  },
} as const satisfies Record<string, ModeSpec>;

export type Mode = keyof typeof MODES;
export const MODE_NAMES = Object.keys(MODES) as Mode[];

/** The server's general instructions (before the mode's and the project's). */
export const BASE_INSTRUCTIONS = baseInstructions.trim();

/**
 * The profile and mode a server runs with, from what the user gave: a mode implies its
 * profile; a profile that contradicts the mode, or an unknown name, is INVALID_INPUT.
 */
export function resolveProfileMode(
  profile: string | undefined,
  mode: string | undefined,
): { profile: Profile; mode: Mode | undefined } {
  if (profile !== undefined && !(PROFILES as readonly string[]).includes(profile))
    throw new PyroError("INVALID_INPUT", `unknown profile "${profile}"`, {
      hint: `profiles: ${PROFILES.join(", ")}`,
    });
  if (mode === undefined) return { profile: (profile as Profile) ?? "workspace-core", mode: undefined };
  if (!(mode in MODES))
    throw new PyroError("INVALID_INPUT", `unknown mode "${mode}"`, {
      hint: `modes: ${MODE_NAMES.join(", ")}`,
    });
  const spec: ModeSpec = MODES[mode as Mode];
  if (profile !== undefined && profile !== spec.profile)
    throw new PyroError("INVALID_INPUT", `mode ${mode} runs with profile ${spec.profile}, not ${profile}`, {
      hint: `drop --profile (mode ${mode} implies ${spec.profile})`,
    });
  return { profile: spec.profile, mode: mode as Mode };
}
