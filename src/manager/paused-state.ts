/**
 * A paused workspace's saved machine state on the host: `workspaces/<id>/paused/` holds
 * `memory` (the VMM's full state: RAM + devices) and `state.json` (its size and sha256, and
 * the machine shape it was saved from). A VMM whose state is more than one file writes the
 * others beside it as `memory.<suffix>` (Firecracker: `memory` = the microVM state,
 * `memory.mem` = guest RAM); `state.json` then lists them in `files`, and size and sha256 are
 * over all of them read in that order ("memory" first, then the rest by name), which is the
 * order the backend's `saveState` hashes them in.
 *
 * Invariants:
 * - The state is written under `paused.tmp/` and renamed to `paused/` only once whole and
 *   fsynced, with its hash recorded; a pause killed midway leaves `paused.tmp/` (removed by
 *   the next pause or start, never read).
 * - A state is used only when `state.json` parses, matches the record's machine shape, and
 *   the memory file's size and sha256 match it: anything else is refused with the reason.
 * - Resume, stop and delete of a paused workspace remove the state (delete with the
 *   workspace's directory); after a successful resume it is stale and goes at once.
 * - `sessions.json` beside it is the supervisor's own state for what the pause kept running
 *   (shells, services, detached execs: src/supervisor/pause.ts), its sha256 in `state.json`;
 *   the resumed machine's new supervisor reads it (verified) to adopt them. Mode 0600: a
 *   service's command as given (secret values typed into it included, as the memory file
 *   beside it holds them too). A state discarded instead of resumed (a cold-boot fallback,
 *   stop while paused) records what it kept as ended, with the reason.
 */
import {
  createReadStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { writeFileAtomic } from "./atomic.ts";
import { listExecIds, lostEnd, readEnd, writeEnd } from "./detached.ts";
import { workspaceDir } from "./paths.ts";
import type { WorkspaceRecord } from "./record.ts";
import { readServiceRecord, serviceNames, serviceRecordPath } from "./services.ts";

export const PAUSED_STATE_FORMAT = 1;

export const pausedDir = (home: string, id: string) => join(workspaceDir(home, id), "paused");
export const pausedTmpDir = (home: string, id: string) => join(workspaceDir(home, id), "paused.tmp");
export const memoryFileName = "memory";

const StateMeta = v.strictObject({
  format: v.literal(PAUSED_STATE_FORMAT),
  bytes: v.number(),
  sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  backend: v.string(),
  accelerator: v.nullable(v.string()),
  vcpu_count: v.number(),
  mem_mib: v.number(),
  network_policy: v.string(),
  paused_at: v.string(),
  /** The state's files in hash order; absent = ["memory"] (a one-file state). */
  files: v.optional(v.array(v.pipe(v.string(), v.regex(/^memory(\.[a-z0-9]+)?$/)))),
  /** sha256 of sessions.json (what the pause kept running), when there is one */
  sessions_sha256: v.optional(v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/))),
});
export type StateMeta = v.InferOutput<typeof StateMeta>;

/** The machine shape a saved state belongs to: a resume must rebuild exactly this machine. */
function shapeOf(r: WorkspaceRecord) {
  return {
    backend: r.backend,
    accelerator: r.accelerator,
    vcpu_count: r.vcpu_count,
    mem_mib: r.mem_mib,
    network_policy: r.network_policy,
  };
}

/** A fresh temporary directory for a pause to write into (any leftover of a killed pause goes). */
export function beginPausedState(home: string, id: string): string {
  const tmp = pausedTmpDir(home, id);
  rmSync(tmp, { recursive: true, force: true });
  rmSync(pausedDir(home, id), { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  return join(tmp, memoryFileName);
}

/** Record the hash and move the finished state into place (the memory file is already fsynced). */
export function commitPausedState(
  home: string,
  r: WorkspaceRecord,
  saved: { bytes: number; sha256: string },
  sessionsSha256?: string,
): StateMeta {
  const tmp = pausedTmpDir(home, r.workspace_id);
  const files = stateFilesIn(tmp);
  const meta: StateMeta = {
    format: PAUSED_STATE_FORMAT,
    bytes: saved.bytes,
    sha256: saved.sha256,
    ...shapeOf(r),
    paused_at: new Date().toISOString(),
    ...(files.length > 1 ? { files } : {}),
    ...(sessionsSha256 ? { sessions_sha256: sessionsSha256 } : {}),
  };
  writeFileAtomic(join(tmp, "state.json"), JSON.stringify(meta, null, 2));
  renameSync(tmp, pausedDir(home, r.workspace_id));
  return meta;
}

/**
 * Remove a workspace's saved state (and any half-written one). `endedBecause`: the state is
 * dropped, not resumed — what the pause kept running is gone with it; its records say so
 * (services `stopped`, detached execs `lost`, with this reason).
 */
export function discardPausedState(home: string, id: string, endedBecause?: string): void {
  if (endedBecause) endKeptSessions(home, id, endedBecause);
  rmSync(pausedTmpDir(home, id), { recursive: true, force: true });
  rmSync(pausedDir(home, id), { recursive: true, force: true });
}

export function readPausedMeta(home: string, id: string): StateMeta | null {
  try {
    const parsed = v.safeParse(
      StateMeta,
      JSON.parse(readFileSync(join(pausedDir(home, id), "state.json"), "utf8")),
    );
    return parsed.success ? parsed.output : null;
  } catch {
    return null;
  }
}

/** `memory` and its `memory.<suffix>` companions in a state directory, in hash order. */
export function stateFilesIn(dir: string): string[] {
  const others = readdirSync(dir)
    .filter((n) => /^memory\.[a-z0-9]+$/.test(n))
    .sort();
  return [memoryFileName, ...others];
}

async function sha256Files(paths: readonly string[]): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for (const path of paths) {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }))
      hasher.update(chunk as Buffer);
  }
  return hasher.digest("hex");
}

/**
 * The memory file to resume from, or why it cannot be used. Reads the whole file to check
 * its hash (which also brings it into the page cache the load then reads from).
 */
export async function verifyPausedState(
  home: string,
  r: WorkspaceRecord,
): Promise<{ ok: true; path: string; meta: StateMeta } | { ok: false; reason: string }> {
  const id = r.workspace_id;
  const path = join(pausedDir(home, id), memoryFileName);
  if (!existsSync(pausedDir(home, id))) return { ok: false, reason: "no saved machine state" };
  const meta = readPausedMeta(home, id);
  if (!meta) return { ok: false, reason: "the saved state's state.json is missing or invalid" };
  const shape = shapeOf(r);
  for (const [k, want] of Object.entries(shape)) {
    const got = meta[k as keyof typeof shape];
    if (got !== want)
      return { ok: false, reason: `the saved state was made with ${k}=${got}, the workspace has ${want}` };
  }
  const names = meta.files ?? [memoryFileName];
  if (names[0] !== memoryFileName) return { ok: false, reason: "the saved state's file list is invalid" };
  const paths = names.map((n) => join(pausedDir(home, id), n));
  const one = paths.length === 1;
  let size = 0;
  for (const [i, p] of paths.entries()) {
    try {
      size += statSync(p).size;
    } catch {
      return {
        ok: false,
        reason: one ? "the memory file is missing" : `the state file ${names[i]} is missing`,
      };
    }
  }
  const what = one ? "the memory file has" : `the state files (${names.join(", ")}) have`;
  if (size !== meta.bytes) return { ok: false, reason: `${what} ${size} bytes, ${meta.bytes} were saved` };
  if ((await sha256Files(paths)) !== meta.sha256)
    return {
      ok: false,
      reason: one ? "the memory file's sha256 does not match" : "the state files' sha256 does not match",
    };
  return { ok: true, path, meta };
}

const SESSIONS_FILE = "sessions.json";

/** Write the supervisor's sessions state into the pause being written; its sha256. */
export function writePausedSessions(home: string, id: string, data: unknown): string {
  const text = JSON.stringify(data);
  writeFileAtomic(join(pausedTmpDir(home, id), SESSIONS_FILE), text, 0o600);
  return new Bun.CryptoHasher("sha256").update(text).digest("hex");
}

/**
 * The sessions state saved with the paused machine: null when the pause kept none, else
 * the parsed JSON once its sha256 matches state.json's, or why it cannot be used.
 */
export function readPausedSessions(
  home: string,
  id: string,
): null | { ok: true; data: unknown } | { ok: false; reason: string } {
  const meta = readPausedMeta(home, id);
  if (!meta?.sessions_sha256) return null;
  let text: string;
  try {
    text = readFileSync(join(pausedDir(home, id), SESSIONS_FILE), "utf8");
  } catch {
    return { ok: false, reason: "the saved sessions file is missing" };
  }
  if (new Bun.CryptoHasher("sha256").update(text).digest("hex") !== meta.sessions_sha256)
    return { ok: false, reason: "the saved sessions file's sha256 does not match" };
  try {
    return { ok: true, data: JSON.parse(text) };
  } catch {
    return { ok: false, reason: "the saved sessions file is not JSON" };
  }
}

/** The state is dropped: services it kept are `stopped`, detached execs `lost`, for `why`. */
function endKeptSessions(home: string, id: string, why: string): void {
  if (!readPausedMeta(home, id)?.sessions_sha256) return;
  const at = new Date().toISOString();
  try {
    for (const name of serviceNames(home, id)) {
      const rec = readServiceRecord(home, id, name);
      if (!rec || (rec.state !== "starting" && rec.state !== "ready")) continue;
      writeFileAtomic(
        serviceRecordPath(home, id, name),
        JSON.stringify({
          ...rec,
          state: "stopped",
          pid: null,
          published_ports: [],
          ended_at: at,
          end_reason: `ended with the paused machine: ${why}`,
        }),
      );
    }
    for (const execId of listExecIds(home, id)) {
      if (!readEnd(home, id, execId))
        writeEnd(home, id, execId, lostEnd(`ended with the paused machine: ${why}`, null));
    }
  } catch {}
}
