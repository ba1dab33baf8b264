/**
 * Persistent shells: `pyro workspace shell open|read|write|signal|resize|close|list`, MCP
 * shell_open/read/write/signal/resize/close/list, SDK openShell/readShell/... . A shell is a PTY in
 * the guest whose output the workspace's supervisor keeps (src/manager/shells.ts), so it
 * outlives the client that opened it; it is gone after reset, stop and delete.
 */
import * as v from "valibot";
import {
  closeShell,
  listShells,
  openShell,
  readShell,
  resizeShell,
  SHELL_DEFAULT_COLS,
  SHELL_DEFAULT_ROWS,
  SHELL_READ_DEFAULT_CHARS,
  SHELL_SIGNAL_NAMES,
  signalShell,
  writeShell,
} from "../manager/shells.ts";
import { SHELL_INPUT_MAX_CHARS } from "../protocol/limits.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { renderTable } from "./render.ts";
import { defineOperation } from "./types.ts";

const RO = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const ACT = { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false };
const shellId = v.pipe(v.string(), v.minLength(1), v.description("Shell id (sh_...) from shell_open."));
const size = (what: string, dflt: number) =>
  v.pipe(
    v.number(),
    v.integer(),
    v.minValue(2),
    v.maxValue(1000),
    v.description(`${what} (default ${dflt}).`),
  );

function renderInfo(s: {
  workspace_id: string;
  shell_id: string;
  state: string;
  cwd: string;
  cols: number;
  rows: number;
  exit_code: number | null;
  output_chars: number;
}): string {
  const how = s.state === "exited" ? `exited ${s.exit_code ?? "(signal)"}` : s.state;
  return [
    `shell ${s.shell_id} in ${s.workspace_id}: ${how}`,
    `  cwd: ${s.cwd}   size: ${s.cols}x${s.rows}   output: ${s.output_chars} chars`,
    s.state === "closed"
      ? ""
      : `  read: pyro workspace shell read ${s.workspace_id} ${s.shell_id} --plain --wait-for-idle-ms 500`,
  ]
    .filter(Boolean)
    .join("\n");
}

export const shellOpenOp = defineOperation({
  name: "shell_open",
  sdk: "openShell",
  sdkArgs: ["workspace_id"],
  output: out.shellInfo,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "shell", "open"],
  positionals: ["workspace_id"],
  summary: "Open a persistent shell (a PTY) in a workspace.",
  description:
    "Open an interactive shell (bash) on a pseudo-terminal in the workspace. It keeps running between calls, like a terminal you come back to: send input with shell_write, read what it printed with shell_read (plain: true gives the screen as text), interrupt with shell_signal, end it with shell_close. Several shells may be open at once (up to 8). Returns shell_id. Shells end when the workspace is reset, stopped or deleted.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    cwd: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.description("Working directory under /workspace (default /workspace)."),
      ),
    ),
    cols: v.optional(size("Terminal columns", SHELL_DEFAULT_COLS)),
    rows: v.optional(size("Terminal rows", SHELL_DEFAULT_ROWS)),
    secret_env: v.optional(f.secretEnv),
  }),
  annotations: ACT,
  profiles: ["workspace-full"],
  cliFlags: { "id-only": { description: "Print only the new shell id.", print: (s) => s.shell_id } },
  examples: [
    "pyro workspace shell open issue-42 --cwd /workspace/src --id-only",
    "pyro workspace shell open api --secret-env API_TOKEN --id-only",
  ],
  run: (ctx, input) => openShell(ctx, input.workspace_id, input),
  render: renderInfo,
});

export const shellReadOp = defineOperation({
  name: "shell_read",
  sdk: "readShell",
  sdkArgs: ["workspace_id", "shell_id"],
  output: out.shellRead,
  mutates: false,
  states: ["started"],
  cli: ["workspace", "shell", "read"],
  positionals: ["workspace_id", "shell_id"],
  summary: "Read a shell's output from a cursor.",
  description:
    "Read what a shell printed, from `cursor` (default: the oldest output kept) up to max_chars (one read returns at most about 1 MiB; has_more: true says more is waiting). Pass the returned next_cursor as cursor next time to get only new output. plain: true renders the output through a terminal emulator: colours and control sequences removed, carriage returns and backspaces applied, full-screen programs (top, less) shown as their screen. wait_for_idle_ms waits until the shell has printed nothing for that long (use it after shell_write so the command's answer is there), at most timeout_seconds. truncated: true means older output was dropped (each shell keeps its last 4 Mi characters).",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    shell_id: shellId,
    cursor: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(0),
        v.description(
          "Character offset to read from (next_cursor of the previous read); past the end is OFFSET_OUT_OF_RANGE.",
        ),
      ),
    ),
    max_chars: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(1),
        v.maxValue(4 * 1024 * 1024),
        v.description(`Most characters to return (default ${SHELL_READ_DEFAULT_CHARS}).`),
      ),
    ),
    plain: v.optional(
      v.pipe(
        v.boolean(),
        v.description("Render as screen text (no escape sequences); cursors are unchanged."),
      ),
    ),
    wait_for_idle_ms: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(1),
        v.maxValue(600_000),
        v.description("Return once the shell has been quiet this long (or has ended)."),
      ),
    ),
    timeout_seconds: v.optional(
      v.pipe(
        v.number(),
        v.gtValue(0),
        v.maxValue(600),
        v.description("The longest wait_for_idle_ms waits (default 30)."),
      ),
    ),
  }),
  annotations: RO,
  profiles: ["workspace-full"],
  cliFlags: {
    "content-only": { description: "Print only the output, exactly (no footer).", print: (r) => r.output },
  },
  examples: [
    "pyro workspace shell read issue-42 sh_0123456789ab --plain --wait-for-idle-ms 500",
    "pyro workspace shell read issue-42 sh_0123456789ab --cursor 1024 --json",
  ],
  run: (ctx, input) =>
    readShell(ctx, input.workspace_id, input.shell_id, {
      cursor: input.cursor,
      max_chars: input.max_chars,
      plain: input.plain,
      wait_for_idle_ms: input.wait_for_idle_ms,
      timeout_ms: input.timeout_seconds === undefined ? undefined : Math.round(input.timeout_seconds * 1000),
    }),
  render: (r) =>
    `${r.output}${r.output.endsWith("\n") || r.output === "" ? "" : "\n"}[shell ${r.shell_id} ${r.state}; chars ${r.cursor}..${r.next_cursor}${r.truncated ? " (older output dropped)" : ""}; next: --cursor ${r.next_cursor}]`,
});

export const shellWriteOp = defineOperation({
  name: "shell_write",
  sdk: "writeShell",
  sdkArgs: ["workspace_id", "shell_id", "input"],
  output: out.shellWritten,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "shell", "write"],
  positionals: ["workspace_id", "shell_id"],
  summary: "Type input into a shell.",
  description:
    "Send text to a shell as if typed, followed by a newline (Enter) unless append_newline is false. Control characters work too (\\u0003 is Ctrl-C, \\u0004 Ctrl-D). Then read the answer with shell_read (wait_for_idle_ms helps).",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    shell_id: shellId,
    input: v.pipe(
      v.string(),
      v.maxLength(SHELL_INPUT_MAX_CHARS - 1),
      v.description("Text to type (a terminal line holds at most 4095 bytes before Enter)."),
    ),
    append_newline: v.optional(
      v.pipe(v.boolean(), v.description("Press Enter after the input (default true).")),
    ),
    no_newline: v.optional(
      v.pipe(v.boolean(), v.description("Do not press Enter after the input (CLI: --no-newline).")),
    ),
  }),
  mcpOmit: ["no_newline"],
  annotations: ACT,
  profiles: ["workspace-full"],
  examples: [
    "pyro workspace shell write issue-42 sh_0123456789ab --input 'make test'",
    "pyro workspace shell write issue-42 sh_0123456789ab --input q --no-newline",
  ],
  run: (ctx, input) =>
    writeShell(
      ctx,
      input.workspace_id,
      input.shell_id,
      input.input,
      input.no_newline ? false : (input.append_newline ?? true),
    ),
  render: (r) => `wrote ${r.input_chars} chars to shell ${r.shell_id}`,
});

export const shellSignalOp = defineOperation({
  name: "shell_signal",
  sdk: "signalShell",
  sdkArgs: ["workspace_id", "shell_id"],
  output: out.shellSignalled,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "shell", "signal"],
  positionals: ["workspace_id", "shell_id"],
  summary: "Send a signal to the shell's foreground job.",
  description:
    "Send a signal to the process group in the shell's foreground (the running command, or the shell itself when idle): INT (default, like Ctrl-C), TERM, KILL, HUP, QUIT, TSTP (like Ctrl-Z), CONT.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    shell_id: shellId,
    signal_name: v.optional(
      v.pipe(
        v.picklist(SHELL_SIGNAL_NAMES),
        v.description("INT, TERM, KILL, HUP, QUIT, TSTP or CONT (default INT)."),
      ),
    ),
  }),
  annotations: ACT,
  profiles: ["workspace-full"],
  examples: ["pyro workspace shell signal issue-42 sh_0123456789ab --signal INT"],
  run: (ctx, input) => signalShell(ctx, input.workspace_id, input.shell_id, input.signal_name),
  render: (r) => `sent ${r.signal_name} to the foreground of shell ${r.shell_id}`,
});

export const shellResizeOp = defineOperation({
  name: "shell_resize",
  sdk: "resizeShell",
  sdkArgs: ["workspace_id", "shell_id", "cols", "rows"],
  output: out.shellInfo,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "shell", "resize"],
  positionals: ["workspace_id", "shell_id"],
  summary: "Change a shell's terminal size.",
  description:
    "Set a shell's terminal size in columns and rows (the PTY's window size; the program in the foreground gets SIGWINCH and redraws). Full-screen programs (top, less) and line wrapping follow it, and so does shell_read with plain: true.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    shell_id: shellId,
    cols: v.pipe(
      v.number(),
      v.integer(),
      v.minValue(2),
      v.maxValue(1000),
      v.description("Terminal columns."),
    ),
    rows: v.pipe(v.number(), v.integer(), v.minValue(2), v.maxValue(1000), v.description("Terminal rows.")),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-full"],
  examples: ["pyro workspace shell resize issue-42 sh_0123456789ab --cols 200 --rows 50"],
  run: (ctx, input) => resizeShell(ctx, input.workspace_id, input.shell_id, input.cols, input.rows),
  render: (s) => `shell ${s.shell_id} is now ${s.cols}x${s.rows}`,
});

export const shellCloseOp = defineOperation({
  name: "shell_close",
  sdk: "closeShell",
  sdkArgs: ["workspace_id", "shell_id"],
  output: out.shellInfo,
  mutates: true,
  states: ["started"],
  cli: ["workspace", "shell", "close"],
  positionals: ["workspace_id", "shell_id"],
  summary: "Close a shell (its processes are ended).",
  description:
    "End a shell: its session is hung up and whatever is left of it is killed; its output is discarded. Later calls with this shell_id fail with SHELL_CLOSED.",
  input: v.strictObject({ workspace_id: f.workspaceRef, shell_id: shellId }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  profiles: ["workspace-full"],
  run: (ctx, input) => closeShell(ctx, input.workspace_id, input.shell_id),
  render: (s) => `closed shell ${s.shell_id}`,
});

export const shellListOp = defineOperation({
  name: "shell_list",
  sdk: "listShells",
  sdkArgs: ["workspace_id"],
  output: out.shellList,
  mutates: false,
  states: ["started"],
  cli: ["workspace", "shell", "list"],
  positionals: ["workspace_id"],
  summary: "List a workspace's shells.",
  description:
    "List the workspace's shells: shell_id, state (running, or exited and still readable), cwd, size, and output_chars (the cursor new output starts at).",
  input: v.strictObject({ workspace_id: f.workspaceRef }),
  annotations: RO,
  profiles: ["workspace-full"],
  run: (ctx, input) => listShells(ctx, input.workspace_id),
  render: (r) =>
    r.shells.length === 0
      ? "no shells"
      : renderTable([
          ["SHELL", "STATE", "CWD", "SIZE", "OUTPUT"],
          ...r.shells.map((s) => [
            s.shell_id,
            s.state,
            s.cwd,
            `${s.cols}x${s.rows}`,
            `${s.output_chars} chars`,
          ]),
        ]),
});
