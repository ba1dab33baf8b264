/**
 * Firecracker snapshot files, as pause/resume uses them (pure helpers + hashing; index.ts does
 * the API calls).
 *
 * A Firecracker snapshot is two files (swagger SnapshotCreateParams): the microVM state
 * (`snapshot_path`, devices + vCPUs, small) and the guest memory (`mem_file_path`, the size of
 * the guest RAM). pyro keeps them side by side: the state at the path the caller names (e.g.
 * `paused.tmp/memory`) and the memory at that path + ".mem". The pair's size and sha256 are
 * taken over the state file followed by the memory file — the order src/manager/paused-state.ts
 * checks (it records the files `memory`, `memory.*` in name order, and "memory" sorts first).
 */
import { closeSync, createReadStream, fsyncSync, openSync } from "node:fs";
import type { SnapshotLoadParams } from "./schema.ts";

/** The memory file that goes with a snapshot state file. */
export const memoryFileOf = (statePath: string): string => `${statePath}.mem`;

/** The files of one snapshot, in hash order. */
export const snapshotFiles = (statePath: string): [string, string] => [statePath, memoryFileOf(statePath)];

/**
 * fsync each file (Firecracker writes them but pyro promises they are on disk before it
 * records their hash), then hash them as one stream. Returns the total size and sha256.
 */
export async function hashStateFiles(paths: readonly string[]): Promise<{ bytes: number; sha256: string }> {
  const hasher = new Bun.CryptoHasher("sha256");
  let bytes = 0;
  for (const path of paths) {
    const fd = openSync(path, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      hasher.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  }
  return { bytes, sha256: hasher.digest("hex") };
}

/**
 * The PUT /snapshot/load body for resuming a paused workspace: the memory from a plain file
 * (mem_backend File: Firecracker maps it privately, so the file is never written), resumed at
 * once. No network_overrides: the tap's name follows from the workspace id (src/vmm/net/tap.ts),
 * so the restored net device finds the tap the supervisor re-created under the same name.
 */
export function resumeLoadParams(statePath: string, memPath = memoryFileOf(statePath)): SnapshotLoadParams {
  return {
    snapshot_path: statePath,
    mem_backend: { backend_type: "File", backend_path: memPath },
    resume_vm: true,
  };
}
