/**
 * Boot and handshake, and the two ways the supervisor tells its creator how that went
 * (src/manager/workspaces.ts launchSupervisor waits for one of them):
 * - failure (the secrets not delivered included): `boot-error.json` (the error's JSON shape)
 *   and a `stopped` record with the reason;
 * - success: a `started` record naming the machine, then `supervisor.ready` (written last,
 *   so a creator that sees it also sees the started record).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { mark } from "../base/profile.ts";
import { prepareBoot } from "../manager/boot.ts";
import { type Machine, startMachine } from "../manager/machine.ts";
import { releasedAfter, setupNetwork, type WorkspaceNetwork } from "../manager/network.ts";
import { BOOT_ERROR_FILE, READY_FILE, runDir } from "../manager/paths.ts";
import { discardPausedState } from "../manager/paused-state.ts";
import type { WorkspaceRecord } from "../manager/record.ts";
import { loadSecrets } from "../manager/secrets.ts";
import { updateRecord } from "../manager/store.ts";
import { dropTemplate, templateFor, templateMayBeAtFault } from "../manager/templates.ts";
import { call } from "../protocol/call.ts";
import { toPyroError } from "../protocol/errors.ts";
import { log } from "./log.ts";

/** How the machine came up (the record's `boot` and `boot_note`). */
interface BootKind {
  boot: "cold" | "template" | "memory";
  note: string | null;
  key?: string;
}

/** Boot the workspace's machine and shake hands with its agent; null (and recorded) on failure. */
export async function bootMachine(
  home: string,
  record: WorkspaceRecord,
  opts: { resume?: boolean } = {},
): Promise<Machine | null> {
  const id = record.workspace_id;
  const run = runDir(home, id);
  mkdirSync(run, { recursive: true, mode: 0o700 });
  let net: WorkspaceNetwork | null = null;
  try {
    // a tap network (allow-lists, Firecracker) exists before the machine and goes after it
    net = await setupNetwork(home, record, (n) => updateRecord(home, id, (r) => ({ ...r, net: n })));
    mark("boot.net");
    const { backend, spec } = await prepareBoot(home, record, opts);
    mark("boot.prepared");
    if (net) spec.tap = net.tap;
    // create, start and reset restore the environment's VM template when one is ready
    // (src/manager/templates.ts); anything else, or a restore that fails, boots cold
    let boot: BootKind = opts.resume ? { boot: "memory", note: null } : { boot: "cold", note: null };
    if (!opts.resume && record.backend !== "host") {
      const t = spec.tap
        ? { ok: false as const, reason: "a tap network boots cold" }
        : await templateFor(home, process.env, record);
      if (t.ok) {
        spec.memoryFile = { path: t.ram, shared: false };
        spec.restoreFrom = t.state;
        boot = { boot: "template", note: null, key: t.key };
      } else boot = { boot: "cold", note: t.reason };
    }
    mark("boot.template-checked");
    let started: Machine;
    try {
      started = await startMachine(backend, spec);
    } catch (err) {
      if (boot.boot !== "template" || !templateMayBeAtFault(err)) throw err;
      // the template did not restore: drop it (the next need makes a new one), boot cold now
      log(`template restore failed: ${(err as Error).message}`);
      if (boot.key) dropTemplate(home, boot.key);
      spec.memoryFile = undefined;
      spec.restoreFrom = undefined;
      boot = {
        boot: "cold",
        note: `restoring the template failed (${(err as Error).message.slice(0, 300)})`,
      };
      started = await startMachine(backend, spec);
    }
    const machine = releasedAfter(started, net);
    mark("boot.machine");
    await updateRecord(home, id, (r) => ({ ...r, boot: boot.boot, boot_note: boot.note }));
    mark("boot.recorded");
    // the workspace's secrets, after every boot (create, start, reset); a failure is a boot failure
    await giveSecrets(home, id, machine).catch(async (err) => {
      await machine.shutdown();
      throw err;
    });
    // A resumed machine has moved on from its saved state; a booted one never had one.
    discardPausedState(home, id);
    mark("boot.secrets");
    log(
      `machine ${opts.resume ? "resumed" : "up"} (${boot.boot}${boot.note ? `: ${boot.note}` : ""}): backend=${machine.handle.backend} pid=${machine.handle.pid} kernel=${machine.hello.kernel}${machine.attach ? ` attach=${machine.attach.host_ms}ms (guest ${machine.attach.guest_ms}ms)` : ""}`,
    );
    return machine;
  } catch (err) {
    net?.release();
    const e = toPyroError(err);
    writeFileSync(`${run}/${BOOT_ERROR_FILE}`, JSON.stringify(e.toJSON()));
    log(`boot failed: ${e.code} ${e.message}`);
    await updateRecord(home, id, (r) => ({
      ...r,
      state: "stopped",
      stop_reason: `boot failed: ${e.code}`,
      supervisor_pid: null,
      vmm_pid: null,
    }));
    return null;
  }
}

/**
 * Send the workspace's secrets to the agent (secrets.set): it keeps them in memory and, in a
 * guest, on the tmpfs /run/pyro/secrets (guest/secrets.ts). A resumed machine still holds
 * them; sending them again is harmless.
 */
async function giveSecrets(home: string, id: string, machine: Machine): Promise<void> {
  const secrets = loadSecrets(home, id);
  if (secrets.length) await call(machine.conn, { op: "secrets.set", secrets });
}

/** The machine is up and clients can connect: record it as started, then say ready. */
export async function announceStarted(home: string, id: string, machine: Machine): Promise<void> {
  await updateRecord(home, id, (r) => ({
    ...r,
    state: "started",
    stop_reason: null,
    agent_unresponsive_since: null,
    supervisor_pid: process.pid,
    vmm_pid: machine.handle.pid,
    backend: machine.handle.backend,
    accelerator: machine.handle.accelerator,
    execution_mode: machine.handle.backend === "host" ? "host_compat" : "guest",
    boot_id: machine.hello.boot_id,
  }));
  writeFileSync(`${runDir(home, id)}/${READY_FILE}`, String(process.pid));
}
