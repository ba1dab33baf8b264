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

test("sessions.json is hashed with the state, read back only whole; a discarded state ends what it kept, with the reason", async () => {
  const { home, id, r } = setup();
  const { readPausedSessions, writePausedSessions, discardPausedState } = await import("./paused-state.ts");
  const { serviceRecordPath, readServiceRecord } = await import("./services.ts");
  const { execDir, readEnd, writeStart } = await import("./detached.ts");
  const statePath = beginPausedState(home, id);
  writeFileSync(statePath, "machine");
  const sha = writePausedSessions(home, id, {
    format: 1,
    shells: { shells: [], closed: [] },
    services: [],
    execs: [],
  });
  commitPausedState(home, r, await hashStateFiles([statePath]), sha);
  expect(readPausedSessions(home, id)).toMatchObject({ ok: true, data: { format: 1 } });
  // a changed byte is refused by its hash
  const file = join(pausedDir(home, id), "sessions.json");
  writeFileSync(file, readFileSync(file, "utf8").replace("1", "2"));
  expect(readPausedSessions(home, id)).toEqual({
    ok: false,
    reason: "the saved sessions file's sha256 does not match",
  });

  // a ready service and a running exec of the paused machine, then the state is dropped
  const svc = {
    service_name: "web",
    state: "ready",
    pid: 42,
    published_ports: [],
    ended_at: null,
    end_reason: null,
  };
  mkdirSync(join(serviceRecordPath(home, id, "web"), ".."), { recursive: true });
  writeFileSync(serviceRecordPath(home, id, "web"), JSON.stringify(svc));
  const execId = "ex_0123456789ab";
  mkdirSync(execDir(home, id, execId), { recursive: true });
  writeStart(home, id, {
    exec_id: execId,
    command: "sleep 1000",
    argv: null,
    cwd: null,
    idempotency_key: null,
    started_at: new Date().toISOString(),
    supervisor_pid: 1,
  });
  discardPausedState(home, id, "the saved state could not be restored");
  const rec =
    readServiceRecord(home, id, "web") ??
    (JSON.parse(readFileSync(serviceRecordPath(home, id, "web"), "utf8")) as typeof svc);
  expect(rec.state).toBe("stopped");
  expect(rec.end_reason).toBe("ended with the paused machine: the saved state could not be restored");
  expect(readEnd(home, id, execId)).toMatchObject({ state: "lost" });
  expect(readPausedSessions(home, id)).toBeNull();
});
