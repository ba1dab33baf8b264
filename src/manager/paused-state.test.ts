/**
 * A paused state of more than one file (Firecracker: microVM state + guest memory) is
 * recorded, hashed and verified as one, in the order the backend hashes it (snapshot.ts).
 */
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashStateFiles, snapshotFiles } from "../vmm/firecracker/snapshot.ts";
import {
  beginPausedState,
  commitPausedState,
  pausedDir,
  readPausedMeta,
  verifyPausedState,
} from "./paused-state.ts";
import type { WorkspaceRecord } from "./record.ts";

const homes: string[] = [];
afterEach(() => {
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
});

function setup() {
  const home = mkdtempSync(join(tmpdir(), "pyro-paused-"));
  homes.push(home);
  const id = "ws_0000000000fc";
  mkdirSync(join(home, "workspaces", id), { recursive: true });
  const r = {
    workspace_id: id,
    backend: "firecracker",
    accelerator: "kvm",
    vcpu_count: 1,
    mem_mib: 512,
    network_policy: "off",
  } as WorkspaceRecord;
  return { home, id, r };
}

test("a two-file state (memory + memory.mem) is committed with its file list and verified whole", async () => {
  const { home, id, r } = setup();
  const statePath = beginPausedState(home, id);
  const [state, mem] = snapshotFiles(statePath);
  writeFileSync(state, "vmstate");
  writeFileSync(mem, "guest ram ".repeat(1000));
  const saved = await hashStateFiles([state, mem]);
  commitPausedState(home, r, saved);
  expect(readPausedMeta(home, id)?.files).toEqual(["memory", "memory.mem"]);
  const ok = await verifyPausedState(home, r);
  expect(ok.ok).toBe(true);
  expect(ok.ok && ok.path).toBe(join(pausedDir(home, id), "memory"));
  // the memory file is part of the hash: a changed byte there is refused
  const memNow = join(pausedDir(home, id), "memory.mem");
  const bytes = readFileSync(memNow);
  bytes[5] = bytes[5]! ^ 1;
  writeFileSync(memNow, bytes);
  expect(await verifyPausedState(home, r)).toEqual({
    ok: false,
    reason: "the state files' sha256 does not match",
  });
  rmSync(memNow);
  expect(await verifyPausedState(home, r)).toEqual({
    ok: false,
    reason: "the state file memory.mem is missing",
  });
});

test("a one-file state (QEMU) records no file list and is verified as before", async () => {
  const { home, id, r } = setup();
  const statePath = beginPausedState(home, id);
  writeFileSync(statePath, "qemu migration stream");
  commitPausedState(home, { ...r, backend: "qemu" } as WorkspaceRecord, await hashStateFiles([statePath]));
  expect(readPausedMeta(home, id)?.files).toBeUndefined();
  expect((await verifyPausedState(home, { ...r, backend: "qemu" } as WorkspaceRecord)).ok).toBe(true);
  // and a state saved by one backend is never used by another
  expect(await verifyPausedState(home, r)).toEqual({
    ok: false,
    reason: "the saved state was made with backend=qemu, the workspace has firecracker",
  });
});
