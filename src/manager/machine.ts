/**
 * Boot a machine and shake hands with its agent. Shared by the workspace supervisor and
 * one-shot `run`; on any failure everything started so far is torn down.
 *
 * Every guest comes up detached from its workspace disk (rootfs/init/pyro-init); when the
 * hello says `attached: false` the host sends sys.attach (guest/attach.ts) with its clock,
 * fresh entropy, a fresh boot id, the resolver and whether a data disk is there. The same
 * path serves cold boots and machines restored from a template.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { fault } from "../base/fault.ts";
import { mark } from "../base/profile.ts";
import { call, type ResultOf } from "../protocol/call.ts";
import type { Connection } from "../protocol/connection.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";
import { tailFile } from "../vmm/process.ts";
import { USER_NET } from "../vmm/qemu/argv.ts";
import type { Backend, BootSpec, VmHandle } from "../vmm/types.ts";
import { type AgentHello, helloAgent } from "./handshake.ts";
import { Teardown } from "./teardown.ts";

export interface Machine {
  handle: VmHandle;
  conn: Connection;
  /** The agent's hello, with `boot_id` and `attached` as they are after sys.attach. */
  hello: AgentHello;
  /** sys.attach timings (null: the agent was attached already, e.g. host compat or a resume). */
  attach: { host_ms: number; guest_ms: number } | null;
  /** Ask the agent to power off, then stop the VMM; idempotent. */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** The console log's last lines (for boot errors). */
function consoleTail(path: string, lines = 20): string {
  return tailFile(path, 8192).split("\n").slice(-lines).join("\n");
}

/** sys.attach for this boot: host clock, 32 random bytes, a fresh boot id, the resolver. */
export function attachRequest(backend: Backend, spec: BootSpec) {
  // The resolver the kernel command line used to carry: the tap's, or QEMU slirp's fixed one.
  const dns = spec.network
    ? (spec.tap?.dns ?? (backend.name === "qemu" ? USER_NET.dns : undefined))
    : undefined;
  const hostname = spec.extraKernelArgs
    ?.find((a) => a.startsWith("pyro.hostname="))
    ?.slice("pyro.hostname=".length);
  return {
    op: "sys.attach" as const,
    unix_ms: Date.now(),
    entropy: randomBytes(32).toString("base64"),
    boot_id: randomUUID(),
    ...(hostname ? { hostname } : {}),
    ...(dns ? { dns } : {}),
    data_disk: !!spec.dataDiskPath && !spec.dataDiskPlaceholder,
  };
}

export async function startMachine(backend: Backend, spec: BootSpec): Promise<Machine> {
  const td = new Teardown();
  const deadline = Date.now() + spec.bootTimeoutMs;
  let vmmExited: Promise<number | null> | null = null;
  try {
    mark("machine.boot");
    const handle = await backend.boot(spec);
    vmmExited = handle.exited;
    mark("machine.vmm-running");
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
    mark("machine.channel");
    // A clone of a VM template is detached (the template was checked so when it was made):
    // its sys.attach goes right behind the hello, saving a round trip to a just-restored guest.
    let early: Promise<ResultOf<"sys.attach">> | null = null;
    const pipelined = !!(spec.restoreFrom && spec.memoryFile);
    const shaken = await Promise.race([
      helloAgent(
        channel,
        deadline,
        undefined,
        spec.environment?.name,
        pipelined
          ? (c) => {
              early = call(c, attachRequest(backend, spec));
              early.catch(() => {}); // awaited below; a failed hello says why first
            }
          : undefined,
      ),
      died,
    ]);
    const conn = shaken.conn;
    mark("machine.hello");
    td.push("conn", () => conn.close());
    let hello = shaken.hello;
    let attach: Machine["attach"] = null;
    if (!hello.attached || early) {
      const t0 = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new PyroError("GUEST_UNREACHABLE", "the guest did not answer sys.attach in time")),
          Math.max(deadline - Date.now(), 1),
        );
      });
      const r = await Promise.race([early ?? call(conn, attachRequest(backend, spec)), died, timeout])
        .catch((err) => {
          const e = toPyroError(err);
          if (e.code === "GUEST_UNREACHABLE" || e.code === "VMM_FAILED") throw e;
          // the guest could not attach (its console says which step failed)
          throw new PyroError(e.code, `the guest could not attach its workspace: ${e.message}`, {
            details: { ...e.details, console_tail: consoleTail(spec.consoleLogPath) },
          });
        })
        .finally(() => clearTimeout(timer));
      hello = { ...hello, boot_id: r.boot_id, attached: true };
      attach = { host_ms: Math.round(performance.now() - t0), guest_ms: r.attached_ms };
      mark(`machine.attached guest_ms=${r.attached_ms}`);
    }
    let stopped = false;
    const machine: Machine = {
      handle,
      conn,
      hello,
      attach,
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
    // A VMM killed from outside (a signal) is the boot's failure whichever error noticed it
    // first (the agent's connection closing can win the race against the exit): say so, or a
    // template restore it interrupted is blamed on the template (templateMayBeAtFault).
    const killed =
      vmmExited !== null &&
      (await Promise.race([vmmExited, Bun.sleep(200).then(() => "running" as const)])) === null;
    await td.run();
    const e = toPyroError(err);
    if (killed && e.code !== "VMM_FAILED")
      throw new PyroError("VMM_FAILED", `${backend.name} exited during boot (code null)`, {
        details: { console_tail: consoleTail(spec.consoleLogPath), noticed_as: e.code },
        cause: err,
      });
    if (e.code === "GUEST_UNREACHABLE" && Date.now() >= deadline) {
      throw new PyroError("GUEST_BOOT_TIMEOUT", `the guest did not come up within ${spec.bootTimeoutMs} ms`, {
        details: { console_tail: consoleTail(spec.consoleLogPath) },
        hint: "see the console log tail in details; `pyro doctor` checks the host",
      });
    }
    throw e;
  }
}
