/**
 * Pause (`sup.pause`): save the running machine's full state to the workspace's paused/
 * directory so `resume` continues it where it was (src/manager/paused-state.ts owns the files).
 * Order, and why:
 * 1. a guest `sync`, so the data disk is consistent even if the saved state is later lost or
 *    refused (resume then cold-boots from the disk);
 * 2. the agent connection is closed and the guest given a moment to see the host go: its
 *    agent then waits for a fresh connection (guest/virtio-serial.ts), which is what the
 *    resumed machine's new supervisor opens;
 * 3. the VMM stops the guest and streams its state to `paused.tmp/memory`; the hash is
 *    recorded and the directory renamed to `paused/` (ending.ts then stops the VMM and
 *    writes the `paused` record).
 */
import type { Machine } from "../manager/machine.ts";
import { beginPausedState, commitPausedState } from "../manager/paused-state.ts";
import { readRecord } from "../manager/record.ts";
import { updateRecord } from "../manager/store.ts";
import { call } from "../protocol/call.ts";
import { PyroError } from "../protocol/errors.ts";
import { log } from "./log.ts";

/** Long enough to write a few GiB of RAM to a loaded disk. */
const SAVE_DEADLINE_MS = 300_000;
/** How long the guest gets to notice the host closed the port before it is stopped. */
const DISCONNECT_SETTLE_MS = 500;

/** `by`: a `sup.pause` request, or auto-pause after idleness (idle.ts); the record keeps it as paused_by. */
export async function saveMachine(
  home: string,
  id: string,
  machine: Machine,
  by: "request" | "idle" = "request",
): Promise<void> {
  const save = machine.handle.saveState?.bind(machine.handle);
  if (!save) throw new PyroError("BACKEND_UNAVAILABLE", `the ${machine.handle.backend} backend cannot pause`);
  const record = readRecord(home, id);
  if (!record) throw new PyroError("WORKSPACE_NOT_FOUND", `no workspace ${id}`);
  await Promise.race([
    call(machine.conn, { op: "exec", argv: ["sync"], timeout_ms: 20_000 }).catch(() => {}),
    Bun.sleep(25_000),
  ]);
  machine.conn.close();
  await Bun.sleep(DISCONNECT_SETTLE_MS);
  const memory = beginPausedState(home, id);
  const t0 = Date.now();
  const saved = await save(memory, Date.now() + SAVE_DEADLINE_MS);
  commitPausedState(home, record, saved);
  await updateRecord(home, id, (r) => ({ ...r, paused_by: by })).catch(() => {});
  log(`paused: ${saved.bytes} bytes of machine state in ${Date.now() - t0} ms`);
}
