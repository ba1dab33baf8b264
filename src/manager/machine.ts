/**
 * Boot a machine and shake hands with its agent. Shared by the workspace supervisor and
 * one-shot `run`; on any failure everything started so far is torn down.
 */
import { fault } from "../base/fault.ts";
import { call } from "../protocol/call.ts";
import type { Connection } from "../protocol/connection.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";
import { tailFile } from "../vmm/process.ts";
import type { Backend, BootSpec, VmHandle } from "../vmm/types.ts";
import { type AgentHello, helloAgent } from "./handshake.ts";
import { Teardown } from "./teardown.ts";

export interface Machine {
  handle: VmHandle;
  conn: Connection;
  hello: AgentHello;
  /** Ask the agent to power off, then stop the VMM; idempotent. */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** The console log's last lines (for boot errors). */
function consoleTail(path: string, lines = 20): string {
  return tailFile(path, 8192).split("\n").slice(-lines).join("\n");
}

export async function startMachine(backend: Backend, spec: BootSpec): Promise<Machine> {
  const td = new Teardown();
  const deadline = Date.now() + spec.bootTimeoutMs;
  try {
    const handle = await backend.boot(spec);
    fault("boot.vmm-spawned", () => handle.pid);
    td.push("vmm", async () => {
      handle.kill();
      await handle.exited;
    });
    // If the VMM dies while we wait, fail at once instead of waiting for the deadline.
    const died = handle.exited.then((code) => {
      throw new PyroError("VMM_FAILED", `${backend.name} exited during boot (code ${code})`, {
        details: { console_tail: consoleTail(spec.consoleLogPath) },
      });
    });
    died.catch(() => {});
    const channel = await Promise.race([handle.connect(deadline), died]);
    const { conn, hello } = await Promise.race([
      helloAgent(channel, deadline, undefined, spec.environment?.name),
      died,
    ]);
    let stopped = false;
    const machine: Machine = {
      handle,
      conn,
      hello,
      async shutdown(timeoutMs = 10000) {
        if (stopped) return;
        stopped = true;
        let acked = false;
        try {
          await Promise.race([call(conn, { op: "shutdown" }).then(() => (acked = true)), Bun.sleep(2000)]);
        } catch {}
        // The agent syncs and resets the machine itself; give it the chance before the
        // VMM is told to quit, or writes still in the guest's page cache are lost.
        if (acked) await Promise.race([handle.exited, Bun.sleep(timeoutMs)]);
        conn.close();
        await handle.stop(timeoutMs);
      },
    };
    td.release();
    return machine;
  } catch (err) {
    await td.run();
    const e = toPyroError(err);
    if (e.code === "GUEST_UNREACHABLE" && Date.now() >= deadline) {
      throw new PyroError("GUEST_BOOT_TIMEOUT", `the guest did not come up within ${spec.bootTimeoutMs} ms`, {
        details: { console_tail: consoleTail(spec.consoleLogPath) },
        hint: "see the console log tail in details; `pyro doctor` checks the host",
      });
    }
    throw e;
  }
}
