/**
 * The workspace record: the one JSON file that says what a workspace is. Schema written once.
 * Invariants: records are written only whole (temp + rename), and reading one never lets a
 * damaged record escape as anything but a CorruptRecord / WORKSPACE_CORRUPT for that id.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { PyroError } from "../protocol/errors.ts";
import { writeFileAtomic } from "./atomic.ts";
import { isWorkspaceId, NAME_RE } from "./ids.ts";
import { recordPath, workspaceDir, workspacesDir } from "./paths.ts";

export const WorkspaceState = v.picklist(["created", "started", "stopped", "paused"]);
export const NetworkPolicy = v.picklist(["off", "egress", "egress+published-ports"]);
export const SeedOrigin = v.object({
  origin_kind: v.picklist(["empty", "directory", "tar_archive", "project"]),
  origin_ref: v.nullable(v.string()),
  /** project seeds: tracked paths left out (src/manager/project.ts) */
  skipped: v.optional(v.array(v.object({ path: v.string(), reason: v.string() }))),
  skipped_count: v.optional(v.number()),
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
  /** egress allow-list (normalised at create; src/manager/network.ts): only these destinations */
  allow_hosts: v.optional(v.array(v.string())),
  allow_cidrs: v.optional(v.array(v.string())),
  /**
   * The tap network this workspace's machine uses or last used (src/vmm/net): written before
   * the tap and table exist, so repair and delete can always remove them. Internal.
   */
  net: v.optional(v.nullable(v.object({ tap: v.string(), table: v.string(), slot: v.number() }))),
  workspace_seed: SeedOrigin,
  vcpu_count: v.number(),
  mem_mib: v.number(),
  ttl_seconds: v.number(),
  /** why the workspace last stopped (supervisor died, VM exited, user stop) */
  stop_reason: v.optional(v.nullable(v.string())),
  /** set by the supervisor while the guest agent does not answer (calls fail with AGENT_UNRESPONSIVE) */
  agent_unresponsive_since: v.optional(v.nullable(v.string())),
  /** with agent_unresponsive_since: the VMM's run state when it halted the guest (e.g. io-error) */
  vm_status: v.optional(v.nullable(v.string())),
  supervisor_pid: v.optional(v.nullable(v.number())),
  vmm_pid: v.optional(v.nullable(v.number())),
  boot_id: v.optional(v.nullable(v.string())),
  /** how the running machine came up: a VM template restored, a cold boot, or a paused state (resume) */
  boot: v.optional(v.nullable(v.picklist(["template", "cold", "memory"]))),
  /** why a guest machine booted cold (no template, a stale one, PYRO_TEMPLATES=off, a failed restore) */
  boot_note: v.optional(v.nullable(v.string())),
  command_count: v.optional(v.number()),
  /** pause after this many seconds without activity (src/supervisor/idle.ts); null/absent: never */
  auto_pause_after_seconds: v.optional(v.nullable(v.number())),
  /** what paused it last: `workspace pause` ("request") or auto_pause_after_seconds ("idle") */
  paused_by: v.optional(v.nullable(v.picklist(["request", "idle"]))),
  /** the last resume: when, and the operation that asked for it (workspace_resume, or one that needed the machine) */
  resumed_at: v.optional(v.nullable(v.string())),
  resumed_by: v.optional(v.nullable(v.string())),
  /** when the workspace was last reset (history, summary and exports count from here) */
  reset_at: v.optional(v.nullable(v.string())),
  /** names and sha256 digests of its secrets; the values are sealed apart (secrets.ts) */
  secrets: v.optional(v.array(v.object({ name: v.string(), sha256: v.string() }))),
  /**
   * A create or start under way, and the process doing it (pid + its start time, so a reused
   * pid is not taken for it). Cleared when it finishes. Its process gone with this still set:
   * the create was abandoned (the workspace is removed) or the start was (it is stopped).
   */
  in_progress: v.optional(
    v.nullable(v.object({ op: v.picklist(["create", "start"]), pid: v.number(), pid_start: v.string() })),
  ),
});
export type WorkspaceRecord = v.InferOutput<typeof WorkspaceRecord>;

/** What users see: the record minus internal bookkeeping. */
export function publicRecord(r: WorkspaceRecord): Record<string, unknown> {
  const { supervisor_pid: _s, vmm_pid: _v, boot_id: _b, in_progress: _p, net: _n, ...rest } = r;
  return {
    ...rest,
    allow_hosts: rest.allow_hosts ?? [],
    allow_cidrs: rest.allow_cidrs ?? [],
    stop_reason: rest.stop_reason ?? null,
    agent_unresponsive_since: rest.agent_unresponsive_since ?? null,
    // only while the mark it explains is set (a boot clears the mark)
    vm_status: rest.agent_unresponsive_since ? (rest.vm_status ?? null) : null,
    command_count: rest.command_count ?? 0,
    auto_pause_after_seconds: rest.auto_pause_after_seconds ?? null,
    paused_by: rest.paused_by ?? null,
    resumed_at: rest.resumed_at ?? null,
    resumed_by: rest.resumed_by ?? null,
    reset_at: rest.reset_at ?? null,
    boot: rest.boot ?? null,
    boot_note: rest.boot_note ?? null,
    secrets: (rest.secrets ?? []).map((s) => s.name),
  };
}

/**
 * A record that exists but cannot be used: unreadable, not JSON, or JSON that is not a valid
 * record. It is reported (list shows it, doctor names it, delete removes it) and never
 * stops any other workspace from working. `reason` never contains a host path.
 */
export interface CorruptRecord {
  /** the directory name (what `delete` takes) */
  workspace_id: string;
  /** the raw record's name when it still holds a valid one: the name stays claimed until delete */
  name: string | null;
  reason: string;
  /** the parsed JSON object when there is one (its pids help `delete` find the machine) */
  raw: Record<string, unknown> | null;
}

export type LoadedRecord = { ok: true; record: WorkspaceRecord } | { ok: false; corrupt: CorruptRecord };

/** Printable ASCII only, bounded: a parser message about garbage bytes must stay one readable line. */
const clean = (s: string) => s.replace(/[^\x20-\x7e]/g, "?").slice(0, 160);

function corruptOf(id: string, reason: string, raw: unknown): CorruptRecord {
  const obj = raw && typeof raw === "object" && !Array.isArray(raw) ? (raw as Record<string, unknown>) : null;
  const name = typeof obj?.name === "string" && NAME_RE.test(obj.name) ? obj.name : null;
  return { workspace_id: id, name, reason, raw: obj };
}

/** Read one record: null when it does not exist, else the record or why it is corrupt. Never throws. */
export function loadRecord(home: string, id: string): LoadedRecord | null {
  const p = recordPath(home, id);
  let text: string;
  try {
    text = readFileSync(p, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    return { ok: false, corrupt: corruptOf(id, `the record cannot be read (${code ?? "error"})`, null) };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    // Writes are atomic (temp + rename), so a partial file is damage, not a write in progress.
    const why =
      text.trim() === ""
        ? "the record is empty"
        : `the record is not valid JSON (${clean((err as Error).message)})`;
    return { ok: false, corrupt: corruptOf(id, why, null) };
  }
  const parsed = v.safeParse(WorkspaceRecord, raw);
  if (!parsed.success) {
    const issues = parsed.issues.slice(0, 3).map((i) => {
      const at = v.getDotPath(i);
      return clean(at ? `${at}: ${i.message}` : i.message);
    });
    return { ok: false, corrupt: corruptOf(id, `invalid record: ${issues.join("; ")}`, raw) };
  }
  if (parsed.output.workspace_id !== id) {
    return { ok: false, corrupt: corruptOf(id, "the record names a different workspace_id", raw) };
  }
  return { ok: true, record: parsed.output };
}

export function corruptError(c: CorruptRecord): PyroError {
  return new PyroError("WORKSPACE_CORRUPT", `workspace ${c.workspace_id} has a corrupt record: ${c.reason}`, {
    details: { workspace_id: c.workspace_id, corrupt_reason: c.reason },
    hint: `\`pyro workspace delete ${c.workspace_id}\` stops its machine and removes it`,
  });
}

/** The record, or null when there is none; a corrupt record is a WORKSPACE_CORRUPT error. */
export function readRecord(home: string, id: string): WorkspaceRecord | null {
  const l = loadRecord(home, id);
  if (!l) return null;
  if (!l.ok) throw corruptError(l.corrupt);
  return l.record;
}

/**
 * Replace a record whole (temp + rename) in its existing directory. Never creates the
 * directory: a write racing the workspace's removal fails instead of bringing back a
 * record of a deleted workspace.
 */
export function writeRecord(home: string, record: WorkspaceRecord): void {
  const path = recordPath(home, record.workspace_id);
  const tmp = `${path}.tmp.${process.pid}.${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** Directories in workspaces/ that are not workspaces: a create's staging and a delete's trash. */
export const NEW_PREFIX = ".new-";
export const TRASH_PREFIX = ".trash-";

/**
 * Make a new workspace appear with its record in one step: the directory is built as
 * `.new-<id>` and renamed into place, so a crash never leaves a workspace directory without
 * a record (which no listing could show). Call under the registry lock (sweepDebris).
 */
export function publishRecord(home: string, record: WorkspaceRecord): void {
  const staging = join(workspacesDir(home), `${NEW_PREFIX}${record.workspace_id}`);
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  writeFileAtomic(join(staging, "workspace.json"), `${JSON.stringify(record, null, 2)}\n`);
  renameSync(staging, workspaceDir(home, record.workspace_id));
}

/**
 * Every record under the home, valid and corrupt apart: a scan never throws because of one
 * record. Only id-shaped directories are workspaces; one without a record yet (being created
 * or deleted right now) is skipped.
 */
export function scanRecords(home: string): { records: WorkspaceRecord[]; corrupt: CorruptRecord[] } {
  const out = { records: [] as WorkspaceRecord[], corrupt: [] as CorruptRecord[] };
  let ids: string[];
  try {
    ids = readdirSync(workspacesDir(home));
  } catch {
    return out;
  }
  for (const id of ids.filter(isWorkspaceId).sort()) {
    const l = loadRecord(home, id);
    if (l?.ok) out.records.push(l.record);
    else if (l) out.corrupt.push(l.corrupt);
  }
  return out;
}

/** The valid records (corrupt ones are left out; see scanRecords). */
export function listRecords(home: string): WorkspaceRecord[] {
  return scanRecords(home).records;
}
