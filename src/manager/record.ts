/** The workspace record: the one JSON file that says what a workspace is. Schema written once. */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as v from "valibot";
import { PyroError } from "../protocol/errors.ts";
import { writeFileAtomic } from "./atomic.ts";
import { recordPath, workspacesDir } from "./paths.ts";

export const WorkspaceState = v.picklist(["created", "started", "stopped"]);
export const NetworkPolicy = v.picklist(["off", "egress", "egress+published-ports"]);
export const SeedOrigin = v.object({
  origin_kind: v.picklist(["empty", "directory", "tar_archive", "project"]),
  origin_ref: v.nullable(v.string()),
});

export const WorkspaceRecord = v.object({
  workspace_id: v.string(),
  name: v.nullable(v.string()),
  labels: v.record(v.string(), v.string()),
  environment: v.string(),
  state: WorkspaceState,
  created_at: v.string(),
  last_activity_at: v.string(),
  expires_at: v.nullable(v.string()),
  execution_mode: v.picklist(["guest", "host_compat"]),
  backend: v.picklist(["firecracker", "qemu", "host"]),
  accelerator: v.nullable(v.picklist(["kvm", "tcg"])),
  network_policy: NetworkPolicy,
  workspace_seed: SeedOrigin,
  vcpu_count: v.number(),
  mem_mib: v.number(),
  ttl_seconds: v.number(),
  /** why the workspace last stopped (supervisor died, VM exited, user stop) */
  stop_reason: v.optional(v.nullable(v.string())),
  supervisor_pid: v.optional(v.nullable(v.number())),
  vmm_pid: v.optional(v.nullable(v.number())),
  boot_id: v.optional(v.nullable(v.string())),
  command_count: v.optional(v.number()),
  /** when the workspace was last reset (history, summary and exports count from here) */
  reset_at: v.optional(v.nullable(v.string())),
});
export type WorkspaceRecord = v.InferOutput<typeof WorkspaceRecord>;

/** What users see: the record minus internal bookkeeping. */
export function publicRecord(r: WorkspaceRecord): Record<string, unknown> {
  const { supervisor_pid: _s, vmm_pid: _v, boot_id: _b, ...rest } = r;
  return {
    ...rest,
    stop_reason: rest.stop_reason ?? null,
    command_count: rest.command_count ?? 0,
    reset_at: rest.reset_at ?? null,
  };
}

export function readRecord(home: string, id: string): WorkspaceRecord | null {
  const p = recordPath(home, id);
  if (!existsSync(p)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(p, "utf8"));
  } catch {
    return null; // never half-written (atomic), so unreadable means foreign: ignore it
  }
  const parsed = v.safeParse(WorkspaceRecord, raw);
  if (!parsed.success) throw new PyroError("INTERNAL", `corrupt workspace record ${p}`);
  return parsed.output;
}

export function writeRecord(home: string, record: WorkspaceRecord): void {
  writeFileAtomic(recordPath(home, record.workspace_id), `${JSON.stringify(record, null, 2)}\n`);
}

export function listRecords(home: string): WorkspaceRecord[] {
  const dir = workspacesDir(home);
  if (!existsSync(dir)) return [];
  const out: WorkspaceRecord[] = [];
  for (const id of readdirSync(dir)) {
    const r = readRecord(home, id);
    if (r) out.push(r);
  }
  return out;
}
