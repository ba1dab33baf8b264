/**
 * The supervisor's side of the one agent connection: reading it under flow control, and
 * judging whether the agent is alive.
 *
 * Invariants:
 * - Reading the agent is paused while any relayed call waits for a client to drain; pauses
 *   are counted, and reading resumes when the last one ends.
 * - A probe concludes "silent" only if the agent was being read throughout it: silence while
 *   flow control paused reading proves nothing (deadline.ts).
 * - Once the agent is marked unresponsive, every call waiting on it fails with the verdict at
 *   once and every new call fails fast with AGENT_UNRESPONSIVE (in memory, and as
 *   `agent_unresponsive_since` in the record), until it answers the ping sent when it was
 *   marked (an agent that was only stopped or starved) or the workspace is restarted.
 * - A silent agent is first explained by its VMM when it can be: if the run state says the
 *   VMM halted the guest (QEMU: io-error, guest-panicked, internal-error, shutdown), the
 *   verdict names that (a host I/O error is IO_ERROR with the free bytes of the filesystem
 *   holding the data disk; the others VMM_FAILED), and the record carries `vm_status`.
 * - A VM paused on a host I/O error continues by itself once there is room again
 *   (continueWhenRoom): its failed writes are retried and nothing is lost.
 */
import { readdirSync, readFileSync, statfsSync } from "node:fs";
import { dataDiskPath } from "../manager/paths.ts";
import { updateRecord } from "../manager/store.ts";
import type { ClientStream, Connection } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { settlesWithin } from "../vmm/process.ts";
import { haltedReason } from "../vmm/qemu/qmp.ts";
import type { VmHandle } from "../vmm/types.ts";
import { judgeSilence, type Probe, type VmmSample } from "./deadline.ts";
import { log } from "./log.ts";

/** How often an unanswered probe looks again at the VMM's CPU use (deadline.ts judgeSilence). */
const PROBE_POLL_MS = 500;
/** How long a silent agent's VMM gets to tell its run state. */
const RUN_STATE_MS = 2_000;
/** A VM paused on a host I/O error continues by itself once its data disk's filesystem has this much free. */
export const RESUME_FREE_BYTES = 64 * 1024 * 1024;
/** How often the free space is looked at while such a VM waits. */
const ROOM_POLL_MS = 2_000;

export class AgentLink {
  /** the restart advice every AGENT_UNRESPONSIVE error carries */
  readonly hint: string;
  private pauses = 0;
  private lastResume = 0;
  /** calls waiting on the agent, so a dead agent can fail them all at once */
  private readonly active = new Set<ClientStream>();
  private unresponsive: { since: string; op: string; halted: PyroError | null } | null = null;

  constructor(
    readonly conn: Connection,
    private readonly home: string,
    private readonly id: string,
    /** the VMM, asked for its run state when the agent is silent */
    private readonly vm?: Partial<Pick<VmHandle, "runState" | "continueVm" | "pid">>,
  ) {
    this.hint = `restart the workspace: \`pyro workspace stop ${id} && pyro workspace start ${id}\``;
  }

  /** Open a relayed call on the agent, or throw AGENT_UNRESPONSIVE if it is marked so. */
  open(request: Record<string, unknown>): ClientStream {
    if (this.unresponsive) {
      const { since, op, halted } = this.unresponsive;
      if (halted) throw halted;
      throw new PyroError(
        "AGENT_UNRESPONSIVE",
        `the agent of workspace ${this.id} has not answered since ${since} (it stopped responding during ${op})`,
        { hint: this.hint, details: { workspace_id: this.id, agent_unresponsive_since: since } },
      );
    }
    const upstream = this.conn.open(request);
    this.active.add(upstream);
    upstream.done.finally(() => this.active.delete(upstream)).catch(() => {});
    return upstream;
  }

  /** Whether reading the agent can be paused at all (flow control needs it). */
  get pausable(): boolean {
    return this.conn.transport.pauseReading !== undefined;
  }

  /** Stop reading the agent until every pause has been matched by resumeReading(). */
  pauseReading(): void {
    this.pauses += 1;
    this.conn.transport.pauseReading?.();
  }

  resumeReading(): void {
    this.pauses -= 1;
    this.lastResume = Date.now();
    if (this.pauses === 0) this.conn.transport.resumeReading?.();
  }

  /**
   * Send `request` on a fresh stream and say whether the agent answered: within `ms`, or
   * later while the VMM had too little CPU to answer (deadline.ts judgeSilence).
   */
  readonly probe: Probe = async (request, ms) => {
    const sent = Date.now();
    const pid = this.vm?.pid;
    const base = pid ? vmmUsage(pid) : null;
    const s = this.conn.open(request);
    // an error answer (e.g. an older agent) still proves it is alive
    if (await settlesWithin(s.done, ms)) return "answered";
    const abandon = () => s.abort(new PyroError("AGENT_UNRESPONSIVE", "probe abandoned"));
    // a VM halted by its VMM is told at once (its CPU would never move)
    let halted = await this.haltedError();
    for (;;) {
      if (this.pauses > 0 || this.lastResume > sent) {
        abandon();
        return "inconclusive";
      }
      if (halted) {
        abandon();
        return { halted };
      }
      const now = pid && base ? vmmUsage(pid) : null;
      const used: VmmSample | null =
        base && now
          ? {
              cpuMs: now.cpuMs - base.cpuMs,
              waitMs: now.waitMs !== null && base.waitMs !== null ? now.waitMs - base.waitMs : null,
              stopped: now.stopped,
            }
          : null;
      const verdict = judgeSilence(Date.now() - sent, ms, used);
      if (verdict !== "wait") {
        halted = await this.haltedError();
        abandon();
        if (halted) return { halted };
        if (this.pauses > 0 || this.lastResume > sent) return "inconclusive";
        return { silent: verdict };
      }
      if (await settlesWithin(s.done, PROBE_POLL_MS)) return "answered";
    }
  };

  /** The VMM's explanation of a silent agent: an error naming its halted run state, or null. */
  async haltedError(): Promise<PyroError | null> {
    if (!this.vm?.runState) return null;
    let status: string;
    try {
      const asked = this.vm.runState();
      asked.catch(() => {});
      if (!(await settlesWithin(asked, RUN_STATE_MS))) return null;
      status = await asked;
    } catch {
      return null; // the VMM cannot say (exited: the ending says so)
    }
    const reason = haltedReason(status);
    if (!reason) return null;
    const free = this.freeBytes();
    const details = { workspace_id: this.id, vm_status: status, host_free_bytes: free };
    const hint =
      status === "io-error"
        ? `free space on the host filesystem holding the workspace (${free ?? "unknown"} bytes free): the VM continues by itself once ${RESUME_FREE_BYTES / 1048576} MiB are free, or ${this.hint}`
        : this.hint;
    return new PyroError(status === "io-error" ? "IO_ERROR" : "VMM_FAILED", reason, { hint, details });
  }

  /** Free bytes of the filesystem holding the data disk (the home's, without one); null if unknown. */
  private freeBytes(): number | null {
    for (const path of [dataDiskPath(this.home, this.id), this.home]) {
      try {
        const fs = statfsSync(path);
        return fs.bavail * fs.bsize;
      } catch {}
    }
    return null;
  }

  /**
   * While the mark `since` stands for a VM paused on a host I/O error: once the data disk's
   * filesystem has RESUME_FREE_BYTES free and the VM is still in io-error, continue it (the
   * failed writes are retried); the agent then answers the outstanding ping, which clears
   * the mark.
   */
  private continueWhenRoom(since: string): void {
    let busy = false;
    const timer = setInterval(async () => {
      if (this.unresponsive?.since !== since) return clearInterval(timer);
      const free = this.freeBytes();
      if (busy || free === null || free < RESUME_FREE_BYTES || !this.vm?.runState || !this.vm.continueVm)
        return;
      busy = true;
      try {
        const asked = this.vm.runState();
        asked.catch(() => {});
        if (!(await settlesWithin(asked, RUN_STATE_MS)) || (await asked) !== "io-error") return;
        log(`the host filesystem has ${free} bytes free again: continuing the VM`);
        await this.vm.continueVm();
      } catch (err) {
        log(`cannot continue the VM: ${(err as Error).message}`);
      } finally {
        busy = false;
      }
    }, ROOM_POLL_MS);
    timer.unref?.();
  }

  /** The agent did not answer during `op`: fail every waiting call with `err` and refuse new ones. */
  markUnresponsive(op: string, err: PyroError): void {
    if (this.unresponsive) return;
    const since = new Date().toISOString();
    const vmStatus = typeof err.details?.vm_status === "string" ? err.details.vm_status : null;
    this.unresponsive = { since, op, halted: vmStatus ? err : null };
    log(`agent unresponsive during ${op}: ${err.message}`);
    for (const s of [...this.active]) s.abort(err);
    this.writeMark(since, vmStatus);
    if (vmStatus === "io-error") this.continueWhenRoom(since);
    this.conn.open({ op: "ping" }).done.then(
      () => {
        if (this.unresponsive?.since !== since) return;
        this.unresponsive = null;
        log("agent answers again");
        this.writeMark(null, null);
      },
      () => {},
    );
  }

  private writeMark(since: string | null, vmStatus: string | null): void {
    void updateRecord(this.home, this.id, (r) => ({
      ...r,
      agent_unresponsive_since: since,
      vm_status: vmStatus,
    })).catch((err) => log(`cannot write the unresponsive mark: ${(err as Error).message}`));
  }
}

/**
 * The VMM process's scheduling so far: CPU from /proc/<pid>/stat (utime + stime of all its
 * threads, ended ones included, in USER_HZ = 100 ticks/s) and run-queue wait summed over its
 * live threads' /proc/<pid>/task/<tid>/schedstat (ns; null where the kernel has none);
 * null once the process is gone.
 */
export function vmmUsage(pid: number): VmmSample | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // fields after the command name (which may hold spaces and parentheses): state is field 3
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuMs = (Number(f[11]) + Number(f[12])) * 10;
  let waitMs: number | null = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        waitMs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[1]) / 1e6;
      } catch {} // a thread that just ended
    }
  } catch {
    waitMs = null;
  }
  if (!Number.isFinite(waitMs)) waitMs = null;
  return { cpuMs, waitMs, stopped: f[0] === "T" || f[0] === "t" };
}
