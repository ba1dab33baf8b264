/**
 * Sessions that survive a pause (sys.keep, the adopt ops; src/supervisor/pause.ts drives it).
 * A shell (shell.open), a service run (service.start) and an exec each live on one stream of
 * one host connection, and end when that connection drops (their onAbandon handlers kill
 * them). A pause must drop the connection — the VMM saves the machine with no host attached,
 * and a resumed machine is reached by a new supervisor on a new connection — so those
 * streams are wrapped in a KeptStream: the handler (shell.ts, service.ts, exec.ts, unchanged)
 * writes to it, and it forwards to whichever host stream holds the session now.
 *
 * Invariants:
 * - Only sessions named by sys.keep survive their connection's close; every other one is
 *   abandoned exactly as before (its processes killed). sys.keep detaches them at once: what
 *   they sent before its result is on the connection, everything after is kept here, so the
 *   host misses nothing whatever it has in flight when it closes.
 * - While no connection holds a kept session, its events and its end are kept in order; its
 *   output is bounded (KEPT_STREAM_BYTES, the oldest dropped and counted), events never are
 *   (a handful per session).
 * - An adopt replays what was kept after an `adopted` event, then the session goes on live on
 *   the new stream (control messages such as exec signals included) and ends with its own
 *   result; an adopted session is kept again only by a new sys.keep.
 * - sys.release ends every kept session no connection adopted (as an abandoned stream ends).
 */
import type { ServerStream } from "../src/protocol/connection.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { KEPT_STREAM_BYTES } from "../src/protocol/limits.ts";

type Kind = "shell" | "service" | "exec";
type Held =
  | { kind: "json"; message: Record<string, unknown> }
  | { kind: "data"; bytes: Uint8Array; channel: number };

/** Sessions by `<kind>:<key>` (shell id, service name, exec pid), from their start to their end. */
const live = new Map<string, KeptStream>();

export class KeptStream {
  private target: ServerStream | null;
  private held: Held[] = [];
  private heldBytes = 0;
  private dropped = 0;
  private end: { result: Record<string, unknown> } | { error: unknown } | null = null;
  private readonly abandonHandlers: Array<() => void> = [];
  private readonly controlHandlers: Array<(m: Record<string, unknown>) => void> = [];
  private key: string | null = null;
  pid = 0;
  clientGone = false;
  readonly input: ServerStream["input"];
  readonly request: Record<string, unknown>;

  constructor(
    first: ServerStream,
    private readonly kind: Kind,
    private readonly name: string | null,
  ) {
    this.target = first;
    this.input = first.input;
    this.request = first.request;
    this.follow(first);
    this.clientGone = first.clientGone;
  }

  private follow(s: ServerStream): void {
    s.onControl((m) => {
      if (this.target === s) for (const h of this.controlHandlers) h(m);
    });
    s.onAbandon(() => {
      if (this.target === s) this.abandon();
    });
  }

  private abandon(): void {
    this.target = null;
    this.clientGone = true;
    if (this.key && live.get(this.key) === this) live.delete(this.key);
    for (const h of this.abandonHandlers) h();
  }

  get isFinished(): boolean {
    return this.end !== null;
  }

  onControl(cb: (m: Record<string, unknown>) => void): void {
    this.controlHandlers.push(cb);
  }

  onAbandon(cb: () => void): void {
    this.abandonHandlers.push(cb);
  }

  writable(): Promise<void> {
    return this.target ? this.target.writable() : Promise.resolve();
  }

  sendJson(message: Record<string, unknown>): void {
    if (this.end) return;
    // the session's start names it: from then on it can be kept
    if (message.type === "started" && typeof message.pid === "number" && !this.key) {
      this.pid = message.pid;
      this.key = `${this.kind}:${this.name ?? message.pid}`;
      live.set(this.key, this);
    }
    if (this.target) this.target.sendJson(message);
    else this.held.push({ kind: "json", message });
  }

  sendData(bytes: Uint8Array, channel?: number): void {
    if (this.end) return;
    if (this.target) {
      this.target.sendData(bytes, channel);
      return;
    }
    this.held.push({ kind: "data", bytes: bytes.slice(), channel: channel ?? 1 });
    this.heldBytes += bytes.byteLength;
    while (this.heldBytes > KEPT_STREAM_BYTES) {
      const i = this.held.findIndex((h) => h.kind === "data");
      if (i < 0) break;
      const h = this.held[i] as Extract<Held, { kind: "data" }>;
      this.held.splice(i, 1);
      this.heldBytes -= h.bytes.byteLength;
      this.dropped += h.bytes.byteLength;
    }
  }

  result(message: Record<string, unknown>): void {
    if (this.end) return;
    this.end = { result: message };
    if (this.target) {
      this.target.result(message);
      this.forget();
    }
  }

  fail(err: unknown): void {
    if (this.end) return;
    this.end = { error: err };
    if (this.target) {
      this.target.fail(err);
      this.forget();
    }
  }

  private forget(): void {
    if (this.key && live.get(this.key) === this) live.delete(this.key);
  }

  /** Continue on `s`: the adopted event, what was kept, then live. */
  adopt(s: ServerStream): void {
    if (this.target) {
      throw new PyroError("INVALID_STATE", `${this.key} is held by a connection (it was not kept)`);
    }
    this.target = s;
    this.follow(s);
    s.sendJson({
      type: "adopted",
      pid: this.pid,
      dropped_bytes: this.dropped,
      ended: this.end !== null,
    });
    for (const h of this.held.splice(0)) {
      if (h.kind === "json") s.sendJson(h.message);
      else s.sendData(h.bytes, h.channel);
    }
    this.heldBytes = 0;
    this.dropped = 0;
    if (this.end) {
      if ("result" in this.end) s.result(this.end.result);
      else s.fail(this.end.error);
      this.forget();
    }
  }

  /** sys.keep: from now on held here until adopted or released. */
  markKept(): void {
    this.target = null;
  }

  get detached(): boolean {
    return this.target === null;
  }

  /** sys.release: a kept session nobody adopted ends as an abandoned one does. */
  release(): void {
    if (this.end) this.forget();
    else this.abandon();
  }
}

/** Wrap a session's stream so a pause can keep it (the handler sees a ServerStream). */
export function keepable(stream: ServerStream, kind: Kind, name: string | null): ServerStream {
  return new KeptStream(stream, kind, name) as unknown as ServerStream;
}

/** sys.keep: the named running sessions survive their connection's close. */
export function keepSessions(req: { shell_ids: string[]; service_names: string[]; exec_pids: number[] }): {
  kept: number;
} {
  const keys = [
    ...req.shell_ids.map((k) => `shell:${k}`),
    ...req.service_names.map((k) => `service:${k}`),
    ...req.exec_pids.map((k) => `exec:${k}`),
  ];
  let kept = 0;
  for (const key of keys) {
    const s = live.get(key);
    if (s && !s.isFinished && !s.detached) {
      s.markKept();
      kept++;
    }
  }
  return { kept };
}

/** An adopt: the kept session `<kind>:<key>` continues on `stream`. */
export function adoptSession(kind: Kind, key: string, stream: ServerStream): void {
  const s = live.get(`${kind}:${key}`);
  if (!s || !s.detached) {
    throw new PyroError("SESSION_NOT_FOUND", `no ${kind} ${key} was kept for a new connection`, {
      details: { kind, key },
    });
  }
  s.adopt(stream);
}

/** sys.release: end the kept sessions nobody adopted. */
export function releaseSessions(): { ended: number } {
  let ended = 0;
  for (const s of [...live.values()]) {
    if (s.detached) {
      s.release();
      ended++;
    }
  }
  return { ended };
}
