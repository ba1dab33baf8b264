/**
 * The SDK: `import { Pyro } from "pyro"`. Methods are generated from the operations table,
 * so they always match the CLI and the MCP tools; the types come from the same schemas.
 */
import { enableConnectionPooling } from "../manager/client.ts";
import { makeCtx } from "../manager/context.ts";
import type { ExecResult } from "../manager/exec.ts";
import { pyroHome } from "../manager/paths.ts";
import type { ServerOptions } from "../mcp/server.ts";
import type { doctorOp } from "../operations/doctor.ts";
import type {
  envBuildOp,
  envInspectOp,
  envListOp,
  envPruneOp,
  envPullOp,
  envPushOp,
} from "../operations/env.ts";
import type { exportOp, fileListOp, fileWriteOp, patchApplyOp, syncPushOp } from "../operations/files.ts";
import { OPERATIONS } from "../operations/index.ts";
import { parseInput } from "../operations/invoke.ts";
import type { runOp } from "../operations/run.ts";
import type { snapshotCreateOp, snapshotDeleteOp, snapshotListOp, summaryOp } from "../operations/state.ts";
import type { Operation, Profile } from "../operations/types.ts";
import type {
  createOp,
  deleteOp,
  execOp,
  listOp,
  logsOp,
  statusOp,
  updateOp,
} from "../operations/workspace.ts";

export type { ErrorCode } from "../protocol/errors.ts";
export { PyroError } from "../protocol/errors.ts";

/** Operation input with defaulted fields optional (environment defaults to debian:12). */
type In<T> = T extends Operation<infer I, any> ? Omit<I, "environment"> & { environment?: string } : never;
type Out<T> = T extends Operation<any, infer O> ? O : never;
type Ref = string;

export interface FileRead {
  workspace_id: string;
  path: string;
  size_bytes: number;
  bytes_read: number;
  truncated: boolean;
  encoding: "utf8" | "base64";
  content: string;
}

export interface WorkspaceDiff {
  workspace_id: string;
  patch: string;
  files: Array<{
    path: string;
    status: string;
    binary: boolean;
    additions: number;
    deletions: number;
    old_mode?: string;
    new_mode?: string;
  }>;
  summary: { files_changed: number; additions: number; deletions: number; binary_files: number };
  truncated: boolean;
}
type WorkspaceRecord = Out<typeof statusOp>;

export interface PyroOptions {
  /** State directory (default $PYRO_HOME or $XDG_DATA_HOME/pyro). */
  home?: string;
  env?: Record<string, string | undefined>;
  /** Progress lines (environment builds, boots); default: ignored. */
  onProgress?: (line: string) => void;
}

export class Pyro {
  readonly home: string;
  private readonly env: Record<string, string | undefined>;
  private readonly onProgress: (line: string) => void;

  constructor(opts: PyroOptions = {}) {
    this.env = { ...(opts.env ?? process.env) };
    if (opts.home) this.env.PYRO_HOME = opts.home;
    this.home = pyroHome(this.env);
    this.onProgress = opts.onProgress ?? (() => {});
    // A long-lived client: keep one supervisor connection per workspace (warm round trips).
    enableConnectionPooling();
  }

  /** Run any operation by its MCP tool name with snake_case input (what the typed methods use). */
  async call<T = any>(tool: string, input: object = {}): Promise<T> {
    const op = OPERATIONS.find((o) => o.name === tool);
    if (!op) throw new Error(`unknown operation ${tool}`);
    return (await op.run(makeCtx(this.env, this.onProgress), parseInput(op, input))) as T;
  }

  run(input: In<typeof runOp>): Promise<ExecResult> {
    return this.call("vm_run", input);
  }
  createWorkspace(input: Partial<In<typeof createOp>> = {}): Promise<WorkspaceRecord> {
    return this.call("workspace_create", input);
  }
  listWorkspaces(input: Partial<In<typeof listOp>> = {}): Promise<Out<typeof listOp>> {
    return this.call("workspace_list", input);
  }
  workspaceStatus(workspace_id: Ref): Promise<WorkspaceRecord> {
    return this.call("workspace_status", { workspace_id });
  }
  updateWorkspace(
    workspace_id: Ref,
    input: Partial<Omit<In<typeof updateOp>, "workspace_id">>,
  ): Promise<WorkspaceRecord> {
    return this.call("workspace_update", { ...input, workspace_id });
  }
  workspaceLogs(
    workspace_id: Ref,
    input: Partial<Omit<In<typeof logsOp>, "workspace_id">> = {},
  ): Promise<Out<typeof logsOp>> {
    return this.call("workspace_logs", { ...input, workspace_id });
  }
  /** `command`: a string runs via /bin/sh -c; an array runs directly. */
  execWorkspace(
    workspace_id: Ref,
    command: string | string[],
    opts: Partial<Omit<In<typeof execOp>, "workspace_id" | "command">> = {},
  ): Promise<ExecResult & { workspace_id: string }> {
    return this.call("workspace_exec", { ...opts, command, workspace_id });
  }
  syncPush(workspace_id: Ref, source: string, opts: { dest?: string } = {}): Promise<Out<typeof syncPushOp>> {
    return this.call("workspace_sync_push", { workspace_id, source, ...opts });
  }
  listWorkspaceFiles(
    workspace_id: Ref,
    path = "/workspace",
    opts: { recursive?: boolean } = {},
  ): Promise<Out<typeof fileListOp>> {
    return this.call("workspace_file_list", { workspace_id, path, ...opts });
  }
  readWorkspaceFile(workspace_id: Ref, path: string, opts: { max_bytes?: number } = {}): Promise<FileRead> {
    return this.call("workspace_file_read", { workspace_id, path, ...opts });
  }
  writeWorkspaceFile(workspace_id: Ref, path: string, text: string): Promise<Out<typeof fileWriteOp>> {
    return this.call("workspace_file_write", { workspace_id, path, text });
  }
  applyWorkspacePatch(workspace_id: Ref, patch: string): Promise<Out<typeof patchApplyOp>> {
    return this.call("workspace_patch_apply", { workspace_id, patch });
  }
  diffWorkspace(workspace_id: Ref, opts: { max_bytes?: number } = {}): Promise<WorkspaceDiff> {
    return this.call("workspace_diff", { workspace_id, ...opts });
  }
  exportWorkspace(workspace_id: Ref, path: string, output: string): Promise<Out<typeof exportOp>> {
    return this.call("workspace_export", { workspace_id, path, output });
  }
  createSnapshot(workspace_id: Ref, name: string): Promise<Out<typeof snapshotCreateOp>> {
    return this.call("snapshot_create", { workspace_id, name });
  }
  listSnapshots(workspace_id: Ref): Promise<Out<typeof snapshotListOp>> {
    return this.call("snapshot_list", { workspace_id });
  }
  deleteSnapshot(workspace_id: Ref, name: string): Promise<Out<typeof snapshotDeleteOp>> {
    return this.call("snapshot_delete", { workspace_id, name });
  }
  /** Rebuild from the baseline (default) or a named snapshot. */
  resetWorkspace(
    workspace_id: Ref,
    opts: { snapshot?: string } = {},
  ): Promise<WorkspaceRecord & { restored_from: string }> {
    return this.call("workspace_reset", { workspace_id, ...opts });
  }
  workspaceSummary(workspace_id: Ref): Promise<Out<typeof summaryOp>> {
    return this.call("workspace_summary", { workspace_id });
  }
  /** Offline disk tools: stopped workspaces only. */
  listWorkspaceDisk(
    workspace_id: Ref,
    path = "/workspace",
    opts: { recursive?: boolean } = {},
  ): Promise<Record<string, unknown>> {
    return this.call("workspace_disk_list", { workspace_id, path, ...opts });
  }
  readWorkspaceDisk(workspace_id: Ref, path: string, opts: { max_bytes?: number } = {}): Promise<FileRead> {
    return this.call("workspace_disk_read", { workspace_id, path, ...opts });
  }
  exportWorkspaceDisk(workspace_id: Ref, output: string): Promise<Record<string, unknown>> {
    return this.call("workspace_disk_export", { workspace_id, output });
  }
  stopWorkspace(workspace_id: Ref): Promise<WorkspaceRecord> {
    return this.call("workspace_stop", { workspace_id });
  }
  startWorkspace(workspace_id: Ref): Promise<WorkspaceRecord> {
    return this.call("workspace_start", { workspace_id });
  }
  deleteWorkspace(workspace_id: Ref): Promise<Out<typeof deleteOp>> {
    return this.call("workspace_delete", { workspace_id });
  }
  doctor(input: Partial<In<typeof doctorOp>> = {}): Promise<Out<typeof doctorOp>> {
    return this.call("doctor", input);
  }
  /** Install an environment and prove it with a throwaway create → exec → reset → delete. */
  prepare(
    input: { environment?: string; network?: boolean; force?: boolean } = {},
  ): Promise<Record<string, unknown>> {
    return this.call("prepare", input);
  }
  listEnvironments(): Promise<Out<typeof envListOp>> {
    return this.call("vm_list_environments", {});
  }
  inspectEnvironment(environment: string): Promise<Out<typeof envInspectOp>> {
    return this.call("env_inspect", { environment });
  }
  buildEnvironment(environment: string, opts: { force?: boolean } = {}): Promise<Out<typeof envBuildOp>> {
    return this.call("env_build", { environment, ...opts });
  }
  pullEnvironment(
    environment: string,
    opts: { from?: string; force?: boolean } = {},
  ): Promise<Out<typeof envPullOp>> {
    return this.call("env_pull", { environment, ...opts });
  }
  pushEnvironment(environment: string, ref: string): Promise<Out<typeof envPushOp>> {
    return this.call("env_push", { environment, ref });
  }
  pruneEnvironments(environment?: string): Promise<Out<typeof envPruneOp>> {
    return this.call("env_prune", environment ? { environment } : {});
  }

  /**
   * An MCP server over the same operations, for embedding (connect it to any transport).
   * The model behind it reaches host paths only under `roots` ("DIR", "DIR:rw", or
   * {path, access}) and writes exports under `exportDir` (default $PYRO_HOME/exports).
   */
  async createServer(opts: Omit<ServerOptions, "env"> = {}) {
    const { createServer } = await import("../mcp/server.ts");
    return createServer({ ...opts, env: this.env });
  }
}
