/**
 * Relaying one client call onto the agent connection. Each client stream becomes a fresh
 * stream on the agent connection (its own number there; the frame protocol is the same on
 * both hops): requests, data both ways, control messages and the terminal answer are copied
 * across.
 *
 * Invariants:
 * - The terminal answer is relayed only after every event before it: the agent's `done` can
 *   settle while events of the same chunk still wait in the queue, so the answer waits for
 *   the event pump.
 * - Bulk data is relayed with bounded buffers: when the far side's write buffer is above
 *   WRITE_HIGH_WATER, reading the near side stops until it drains below LOW_WATER (the OS then
 *   pushes back on the sender).
 * - Every call ends: with the agent's answer, or with a deadline verdict (deadline.ts); a
 *   verdict that the agent is dead marks it unresponsive (agent.ts).
 * - After the call ended, the client's input is drained and dropped: its connection must
 *   keep being read for its next call.
 * - A client that vanishes takes its command with it (SIGKILL).
 * - `beforeAnswer` (bookkeeping) runs on a result, after the last event and before the client
 *   sees it.
 * - With a redactor (the workspace has secrets): an exec's stdout and stderr are redacted as
 *   they pass (each channel its own stream, so a value split across frames is caught; what a
 *   stream holds back is sent before the result), and every error's text is redacted. Other
 *   ops' data (file content, tar, the diff) passes byte for byte.
 */
import { fault } from "../base/fault.ts";
import type { Redactor, StreamRedactor } from "../manager/redact.ts";
import {
  type ClientStream,
  type Connection,
  type ServerStream,
  WRITE_HIGH_WATER,
} from "../protocol/connection.ts";
import type { AgentLink } from "./agent.ts";
import { overdue, type WatchedCall } from "./deadline.ts";

/** Paused reading resumes once the far side's buffer is below this. */
const LOW_WATER = 1024 * 1024;

export function relayCall(
  client: ServerStream,
  clientConn: Connection,
  agent: AgentLink,
  beforeAnswer?: (result: Record<string, unknown>) => Promise<void>,
  redactor: Redactor | null = null,
): void {
  const req = client.request;
  const op = String(req.op ?? "");
  const redacting = op === "exec" && redactor !== null;
  const streams = new Map<number, StreamRedactor>();
  const send = (bytes: Uint8Array, channel: number) => {
    if (!redacting) return client.sendData(bytes, channel);
    const s = streams.get(channel) ?? redactor.stream();
    streams.set(channel, s);
    const out = s.push(bytes);
    if (out.length) client.sendData(out, channel);
  };
  const flush = () => {
    for (const [channel, s] of streams) {
      const out = s.flush();
      if (out.length) client.sendData(out, channel);
    }
  };
  const fail = (err: unknown) => client.fail(redactor ? redactor.error(err) : err);
  let upstream: ClientStream;
  try {
    upstream = agent.open(req);
  } catch (err) {
    fail(err);
    return;
  }
  const call: WatchedCall = {
    op,
    timeoutMs: op === "exec" && typeof req.timeout_ms === "number" ? req.timeout_ms : undefined,
    started: Date.now(),
    lastProgress: Date.now(),
    pid: null,
  };
  const settled = new AbortController();
  const ended = new Promise<void>((res) => settled.signal.addEventListener("abort", () => res()));

  // agent → client
  const relayed = (async () => {
    for await (const ev of upstream.events) {
      call.lastProgress = Date.now();
      if (ev.kind === "data") {
        fault(`${op}.output`);
        send(ev.bytes, ev.channel);
      } else {
        if (ev.message.type === "started" && typeof ev.message.pid === "number") call.pid = ev.message.pid;
        client.sendJson(ev.message);
      }
      if ((clientConn.transport.bufferedBytes ?? 0) > WRITE_HIGH_WATER && agent.pausable) {
        agent.pauseReading();
        await clientConn.writable(LOW_WATER);
        agent.resumeReading();
      }
    }
  })();

  // client → agent
  (async () => {
    try {
      for await (const part of client.input) {
        if (settled.signal.aborted) continue;
        call.lastProgress = Date.now();
        upstream.sendData(part);
        if ((agent.conn.transport.bufferedBytes ?? 0) > WRITE_HIGH_WATER) {
          clientConn.transport.pauseReading?.();
          await Promise.race([agent.conn.writable(LOW_WATER), ended]);
          clientConn.transport.resumeReading?.();
        }
      }
      upstream.endInput();
    } catch {}
  })();
  client.onControl((m) => upstream.sendJson(m));
  client.onAbandon(() => upstream.sendJson({ op: "signal", signal: "SIGKILL" }));

  void overdue(call, agent.probe, settled.signal, agent.hint).then((verdict) => {
    if (!verdict) return;
    if (verdict.agentDead) agent.markUnresponsive(op, verdict.error);
    upstream.abort(verdict.error);
  });

  upstream.done
    .finally(() => settled.abort())
    .then(
      async (result) => {
        await relayed;
        flush();
        await beforeAnswer?.(result);
        client.result(result);
      },
      async (err) => {
        await relayed.catch(() => {});
        flush();
        fail(err);
      },
    );
}
