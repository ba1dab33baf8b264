/**
 * Persistent shells as clients see them: every call goes to the workspace's supervisor
 * (`sup.shell.*`, src/supervisor/shells.ts), which owns the shells and their output buffers,
 * so a shell outlives the CLI process, SDK object or MCP server that opened it.
 *
 * Invariants:
 * - Reads return raw output and cursors exactly as the supervisor keeps them (raw reads with
 *   the returned cursors reassemble the output character for character); `plain` renders the
 *   same slice through a terminal emulator (terminal.ts) and changes no cursor.
 * - A read whose cursor fell behind the bounded buffer says so twice: `truncated: true`,
 *   and a marker line before the output naming how many characters were dropped.
 */
import type { ResultOf } from "../protocol/call.ts";
import type { SHELL_SIGNALS } from "../protocol/messages.ts";
import { callWorkspace } from "./client.ts";
import type { Ctx } from "./context.ts";
import type { WorkspaceRecord } from "./record.ts";
import { resolveWorkspace } from "./store.ts";
import { renderPlain } from "./terminal.ts";

export const SHELL_DEFAULT_COLS = 120;
export const SHELL_DEFAULT_ROWS = 30;
export const SHELL_READ_DEFAULT_CHARS = 65536;
/** The short names shell_signal takes (the agent's are SIG-prefixed). */
export const SHELL_SIGNAL_NAMES = ["INT", "TERM", "KILL", "HUP", "QUIT", "TSTP", "CONT"] as const;
export type ShellSignalName = (typeof SHELL_SIGNAL_NAMES)[number];

type ShellInfo = ResultOf<"sup.shell.open">;

async function started(ctx: Ctx, ref: string): Promise<WorkspaceRecord> {
  return resolveWorkspace(ctx.home, ref);
}

const withWorkspace = <T extends object>(r: WorkspaceRecord, x: T) => ({
  workspace_id: r.workspace_id,
  ...x,
});

export async function openShell(
  ctx: Ctx,
  ref: string,
  opts: {
    cwd?: string;
    cols?: number;
    rows?: number;
    env?: Record<string, string>;
    secret_env?: Record<string, string>;
  },
): Promise<ShellInfo & { workspace_id: string }> {
  const r = await started(ctx, ref);
  const info = await callWorkspace(ctx.home, r, {
    op: "sup.shell.open",
    cwd: opts.cwd,
    cols: opts.cols ?? SHELL_DEFAULT_COLS,
    rows: opts.rows ?? SHELL_DEFAULT_ROWS,
    env: opts.env,
    secret_env: opts.secret_env,
  });
  return withWorkspace(r, info);
}

export async function readShell(
  ctx: Ctx,
  ref: string,
  shellId: string,
  opts: {
    cursor?: number;
    max_chars?: number;
    plain?: boolean;
    wait_for_idle_ms?: number;
    timeout_ms?: number;
  },
) {
  const r = await started(ctx, ref);
  const res = await callWorkspace(ctx.home, r, {
    op: "sup.shell.read",
    shell_id: shellId,
    cursor: opts.cursor,
    max_chars: opts.max_chars ?? SHELL_READ_DEFAULT_CHARS,
    wait_for_idle_ms: opts.wait_for_idle_ms,
    timeout_ms: opts.timeout_ms,
  });
  let output = opts.plain ? await renderPlain(res.output, res.cols, res.rows) : res.output;
  if (res.truncated) {
    const dropped = res.cursor - (opts.cursor ?? 0);
    output = `[… ${dropped} earlier characters were dropped (a shell keeps its last 4 Mi characters) …]\n${output}`;
  }
  return withWorkspace(r, { ...res, output, plain: opts.plain ?? false });
}

export async function writeShell(
  ctx: Ctx,
  ref: string,
  shellId: string,
  input: string,
  appendNewline = true,
) {
  const r = await started(ctx, ref);
  const text = appendNewline ? `${input}\n` : input;
  const info = await callWorkspace(ctx.home, r, { op: "sup.shell.write", shell_id: shellId, input: text });
  return withWorkspace(r, { ...info, input_chars: text.length });
}

export async function signalShell(ctx: Ctx, ref: string, shellId: string, name: ShellSignalName = "INT") {
  const r = await started(ctx, ref);
  const signal = `SIG${name}` as (typeof SHELL_SIGNALS)[number];
  const info = await callWorkspace(ctx.home, r, { op: "sup.shell.signal", shell_id: shellId, signal });
  return withWorkspace(r, { ...info, signal_name: name });
}

export async function resizeShell(ctx: Ctx, ref: string, shellId: string, cols: number, rows: number) {
  const r = await started(ctx, ref);
  return withWorkspace(
    r,
    await callWorkspace(ctx.home, r, { op: "sup.shell.resize", shell_id: shellId, cols, rows }),
  );
}

export async function closeShell(ctx: Ctx, ref: string, shellId: string) {
  const r = await started(ctx, ref);
  return withWorkspace(r, await callWorkspace(ctx.home, r, { op: "sup.shell.close", shell_id: shellId }));
}

export async function listShells(ctx: Ctx, ref: string) {
  const r = await started(ctx, ref);
  const { shells } = await callWorkspace(ctx.home, r, { op: "sup.shell.list" });
  return withWorkspace(r, { shells: shells.map((s) => withWorkspace(r, s)), count: shells.length });
}

/** Open shells of a workspace for its status: 0 unless started, null when its supervisor cannot be asked. */
export async function countShells(ctx: Ctx, r: WorkspaceRecord): Promise<number | null> {
  if (r.state !== "started") return 0;
  try {
    return (await callWorkspace(ctx.home, r, { op: "sup.shell.list" })).shells.length;
  } catch {
    return null;
  }
}
