/**
 * Detached exec: read, wait, kill, list (`workspace_exec` with `detach: true` starts one,
 * src/operations/workspace.ts). The spools and end records live on the host
 * (src/manager/detached.ts), so read, wait and list work in any workspace state, after every
 * client is gone and after the machine stopped.
 *
 * CLI names are `workspace exec-read|exec-wait|exec-kill|exec-list`: `workspace exec read`
 * could not be told apart from exec in a workspace named "read".
 */
import * as v from "valibot";
import {
  type DetachedExec,
  EXEC_READ_DEFAULT_BYTES,
  EXEC_WAIT_DEFAULT_SECONDS,
  KILL_SIGNAL_NAMES,
  killDetached,
  listDetached,
  readDetached,
  waitDetached,
} from "../manager/detached.ts";
import { READ_MAX_BYTES } from "../protocol/limits.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { renderTable } from "./render.ts";
import { defineOperation } from "./types.ts";

const RO = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const execId = v.pipe(v.string(), v.minLength(1), v.description("Detached exec id (ex_...)."));

/** CLI exit code of a detached exec: its own when it exited, 75 while running, 70 when lost. */
export function detachedExitCode(x: { state: string; exit_code: number | null }): number {
  if (x.state === "running") return 75;
  return x.exit_code ?? 70;
}

/** One exec for people: state, exit, sizes, and the next command to run. */
export function renderDetached(x: DetachedExec & { reused?: boolean }): string {
  const what = x.command ?? (x.argv as string[] | null)?.join(" ") ?? "";
  const how =
    x.state === "running"
      ? "running"
      : x.state === "exited"
        ? `exited ${x.exit_code}${x.timed_out ? " (timed out)" : ""} after ${x.duration_ms} ms`
        : `lost: ${x.end_reason}`;
  const lines = [
    `exec ${x.exec_id} in ${x.workspace_id}: ${how}${x.reused ? " (existing exec for this idempotency key)" : ""}`,
    `  command: ${what}`,
    `  output:  ${x.stdout_bytes} bytes stdout, ${x.stderr_bytes} bytes stderr${x.stdout_truncated || x.stderr_truncated ? " (spool cap reached)" : ""}`,
  ];
  if (x.end_reason && x.state === "exited") lines.push(`  reason:  ${x.end_reason}`);
  lines.push(
    `  read:    pyro workspace exec-read ${x.workspace_id} ${x.exec_id} --content-only`,
    x.state === "running" ? `  wait:    pyro workspace exec-wait ${x.workspace_id} ${x.exec_id}` : "",
  );
  return lines.filter(Boolean).join("\n");
}

export const execReadOp = defineOperation({
  name: "exec_read",
  sdk: "readExec",
  sdkArgs: ["workspace_id", "exec_id"],
  output: out.execReadResult,
  mutates: false,
  cli: ["workspace", "exec-read"],
  positionals: ["workspace_id", "exec_id"],
  summary: "Read a detached exec's spooled output by byte offset.",
  description:
    "Read stdout or stderr of a detached exec (workspace_exec with detach: true) from byte `offset`, at most max_bytes. Returns data, next_offset (pass it as offset to read on) and eof (the exec ended and everything was read). Works while it runs, after it ended, and when the workspace is stopped.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    exec_id: execId,
    stream: v.optional(
      v.pipe(v.picklist(["stdout", "stderr"]), v.description("Which stream (default stdout).")),
      "stdout",
    ),
    offset: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(0),
        v.description(
          "Byte offset to read from (default 0); past the bytes spooled so far is OFFSET_OUT_OF_RANGE.",
        ),
      ),
      0,
    ),
    max_bytes: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(1),
        v.maxValue(READ_MAX_BYTES),
        v.description("Most bytes to return (default 65536, max 16 MiB; over MCP at most 1 MiB)."),
      ),
      EXEC_READ_DEFAULT_BYTES,
    ),
  }),
  annotations: RO,
  profiles: ["workspace-full"],
  cliFlags: {
    "content-only": {
      description: "Print only the bytes read, exactly (no header).",
      print: (r) => Buffer.from(r.data, r.encoding === "base64" ? "base64" : "utf8"),
    },
  },
  examples: [
    "pyro workspace exec-read issue-42 ex_0123456789ab --content-only",
    "pyro workspace exec-read issue-42 ex_0123456789ab --stream stderr --offset 65536 --json",
  ],
  run: (ctx, input) =>
    readDetached(ctx, input.workspace_id, input.exec_id, input.stream, input.offset, input.max_bytes),
  render: (r) =>
    `${r.encoding === "base64" ? `(${Buffer.byteLength(r.data, "base64")} bytes, not UTF-8; --content-only prints them)` : r.data}\n[${r.stream} bytes ${r.offset}..${r.next_offset} of ${r.size_bytes}${r.eof ? ", end" : `; next: --offset ${r.next_offset}`}]`,
});

export const execWaitOp = defineOperation({
  name: "exec_wait",
  sdk: "waitExec",
  sdkArgs: ["workspace_id", "exec_id"],
  output: out.detachedExec,
  mutates: false,
  cli: ["workspace", "exec-wait"],
  positionals: ["workspace_id", "exec_id"],
  summary: "Wait for a detached exec to end.",
  description:
    'Wait up to timeout_seconds for a detached exec to end, then return it: state exited with exit_code, timed_out, duration_ms and ended_at; lost with end_reason if it died with its machine; or state "running" with the bytes spooled so far (stdout_bytes, stderr_bytes) if it is still running. Read its output with exec_read.',
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    exec_id: execId,
    timeout_seconds: v.optional(
      v.pipe(
        v.number(),
        v.minValue(0),
        v.maxValue(3600),
        v.description(`How long to wait (default ${EXEC_WAIT_DEFAULT_SECONDS}; 0 = just look).`),
      ),
    ),
  }),
  annotations: RO,
  profiles: ["workspace-full"],
  examples: ["pyro workspace exec-wait issue-42 ex_0123456789ab --timeout-seconds 600"],
  run: (ctx, input) => waitDetached(ctx, input.workspace_id, input.exec_id, input.timeout_seconds),
  render: renderDetached,
  exitCode: detachedExitCode,
});

export const execKillOp = defineOperation({
  name: "exec_kill",
  sdk: "killExec",
  sdkArgs: ["workspace_id", "exec_id"],
  output: out.detachedExec,
  mutates: true,
  cli: ["workspace", "exec-kill"],
  positionals: ["workspace_id", "exec_id"],
  summary: "Signal a detached exec's process group (default KILL).",
  description:
    "Send a signal (default KILL) to a running detached exec's whole process group and return it once it ended (up to 5 s; state may still be running after a gentler signal). An exec that already ended is returned as it is, with signalled: false.",
  input: v.strictObject({
    workspace_id: f.workspaceRef,
    exec_id: execId,
    signal_name: v.optional(
      v.pipe(v.picklist(KILL_SIGNAL_NAMES), v.description("INT, TERM, KILL (default), HUP or QUIT.")),
    ),
  }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-full"],
  run: (ctx, input) => killDetached(ctx, input.workspace_id, input.exec_id, input.signal_name),
  render: renderDetached,
});

export const execListOp = defineOperation({
  name: "exec_list",
  sdk: "listExecs",
  sdkArgs: ["workspace_id"],
  output: out.detachedExecList,
  mutates: false,
  cli: ["workspace", "exec-list"],
  positionals: ["workspace_id"],
  summary: "List a workspace's detached execs, oldest first.",
  description:
    "List the detached execs of a workspace since its creation or last reset, oldest first: exec_id, command, state (running, exited, lost), exit_code, and bytes spooled.",
  input: v.strictObject({ workspace_id: f.workspaceRef }),
  annotations: RO,
  profiles: ["workspace-full"],
  run: (ctx, input) => listDetached(ctx, input.workspace_id),
  render: (r) =>
    r.execs.length === 0
      ? "no detached execs"
      : renderTable([
          ["EXEC", "STATE", "EXIT", "STDOUT", "STDERR", "STARTED", "COMMAND"],
          ...r.execs.map((x) => [
            x.exec_id,
            x.state,
            x.exit_code === null ? "-" : String(x.exit_code),
            String(x.stdout_bytes),
            String(x.stderr_bytes),
            x.started_at,
            x.command ?? x.argv?.join(" ") ?? "",
          ]),
        ]),
});
