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
 */
import { updateRecord } from "../manager/store.ts";
import type { ClientStream, Connection } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { settlesWithin } from "../vmm/process.ts";
import type { Probe } from "./deadline.ts";
import { log } from "./log.ts";

export class AgentLink {
  /** the restart advice every AGENT_UNRESPONSIVE error carries */
  readonly hint: string;
  private pauses = 0;
  private lastResume = 0;
  /** calls waiting on the agent, so a dead agent can fail them all at once */
  private readonly active = new Set<ClientStream>();
  private unresponsive: { since: string; op: string } | null = null;

  constructor(
    readonly conn: Connection,
    private readonly home: string,
    private readonly id: string,
  ) {
    this.hint = `restart the workspace: \`pyro workspace stop ${id} && pyro workspace start ${id}\``;
  }

  /** Open a relayed call on the agent, or throw AGENT_UNRESPONSIVE if it is marked so. */
  open(request: Record<string, unknown>): ClientStream {
    if (this.unresponsive) {
      const { since, op } = this.unresponsive;
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

  /** Send `request` on a fresh stream and say whether the agent answered within `ms`. */
  readonly probe: Probe = async (request, ms) => {
    const sent = Date.now();
    const s = this.conn.open(request);
    // an error answer (e.g. an older agent) still proves it is alive
    if (await settlesWithin(s.done, ms)) return "answered";
    s.abort(new PyroError("AGENT_UNRESPONSIVE", "probe abandoned"));
    return this.pauses > 0 || this.lastResume > sent ? "inconclusive" : "silent";
  };

  /** The agent did not answer during `op`: fail every waiting call with `err` and refuse new ones. */
  markUnresponsive(op: string, err: PyroError): void {
    if (this.unresponsive) return;
    const since = new Date().toISOString();
    this.unresponsive = { since, op };
    log(`agent unresponsive during ${op}: ${err.message}`);
    for (const s of [...this.active]) s.abort(err);
    this.writeMark(since);
    this.conn.open({ op: "ping" }).done.then(
      () => {
        if (this.unresponsive?.since !== since) return;
        this.unresponsive = null;
        log("agent answers again");
        this.writeMark(null);
      },
      () => {},
    );
  }

  private writeMark(since: string | null): void {
    void updateRecord(this.home, this.id, (r) => ({ ...r, agent_unresponsive_since: since })).catch(() => {});
  }
}
