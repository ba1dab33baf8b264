/**
 * The per-workspace supervisor: `pyro __supervise --home H --id ID`, detached. It owns the
 * VMM (or host agent), holds the one agent channel and serves any number of local clients
 * on run/supervisor.sock, re-numbering their streams onto the agent connection. It records
 * history and activity, enforces the TTL, and writes the final state when the machine ends.
 * Every relayed call has a deadline (deadline.ts); an agent found unresponsive is marked
 * (in memory and as `agent_unresponsive_since` in the record) and every agent call fails
 * fast with AGENT_UNRESPONSIVE until it answers again or the workspace is restarted.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { prepareBoot } from "../manager/boot.ts";
import { type Machine, startMachine } from "../manager/machine.ts";
import { BOOT_ERROR_FILE, historyPath, READY_FILE, runDir, supervisorSocket } from "../manager/paths.ts";
import { readRecord } from "../manager/record.ts";
import { updateRecord } from "../manager/store.ts";
import {
  type ClientStream,
  Connection,
  type ServerStream,
  WRITE_HIGH_WATER,
} from "../protocol/connection.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";
import { overdue, type Probe, type WatchedCall } from "./deadline.ts";
import { listenUnix } from "./listen.ts";

/** Requests that change the workspace: they bump last_activity_at (reads do not). */
const MUTATING = new Set(["exec", "fs.write", "fs.mkdir", "fs.remove", "fs.move", "archive.import"]);

function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString()} ${msg}\n`);
}

export async function supervise(home: string, id: string): Promise<void> {
  const record = readRecord(home, id);
  if (!record) throw new PyroError("WORKSPACE_NOT_FOUND", `no workspace ${id}`);
  const run = runDir(home, id);
  mkdirSync(run, { recursive: true, mode: 0o700 });

  let machine: Machine;
  try {
    const { backend, spec } = await prepareBoot(home, record);
    machine = await startMachine(backend, spec);
  } catch (err) {
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
    process.exit(1);
  }
  log(
    `machine up: backend=${machine.handle.backend} pid=${machine.handle.pid} kernel=${machine.hello.kernel}`,
  );

  let ending = false;
  const finish = async (reason: string, opts: { deleteAfter?: boolean } = {}) => {
    if (ending) return;
    ending = true;
    log(`stopping: ${reason}`);
    server.stop();
    await machine.shutdown().catch(() => {});
    await updateRecord(home, id, (r) => ({
      ...r,
      state: "stopped",
      stop_reason: reason,
      agent_unresponsive_since: null,
      supervisor_pid: null,
      vmm_pid: null,
    })).catch(() => {});
    if (opts.deleteAfter) {
      const { removeWorkspaceFiles } = await import("../manager/store.ts");
      removeWorkspaceFiles(home, id);
    }
    process.exit(0);
  };

  machine.handle.exited.then((code) => {
    if (!ending) void finish(`machine exited unexpectedly (code ${code})`);
  });
  machine.conn.onClose(() => {
    if (!ending) void finish("lost the agent connection");
  });

  // TTL: the only background cleanup. Expiry deletes the workspace (it is disposable by contract).
  if (record.expires_at) {
    const ms = Date.parse(record.expires_at) - Date.now();
    setTimeout(() => void finish("ttl expired", { deleteAfter: true }), Math.max(ms, 0));
  }

  const LOW_WATER = 1024 * 1024;
  const agent = machine.conn.transport;
  // Flow control may pause reading the agent; silence then proves nothing (deadline.ts).
  let agentPauses = 0;
  let lastAgentResume = 0;
  const pauseAgent = () => {
    agentPauses += 1;
    agent.pauseReading?.();
  };
  const resumeAgent = () => {
    agentPauses -= 1;
    lastAgentResume = Date.now();
    if (agentPauses === 0) agent.resumeReading?.();
  };
  const probe: Probe = async (request, ms) => {
    const sent = Date.now();
    const s = machine.conn.open(request);
    const answered = await Promise.race([
      s.done.then(
        () => true,
        () => true, // an error answer (e.g. an older agent) still proves it is alive
      ),
      Bun.sleep(ms).then(() => false),
    ]);
    if (answered) return "answered";
    s.abort(new PyroError("AGENT_UNRESPONSIVE", "probe abandoned"));
    return agentPauses > 0 || lastAgentResume > sent ? "inconclusive" : "silent";
  };

  // Calls waiting on the agent, so a dead agent can fail them all at once.
  const active = new Set<ClientStream>();
  let unresponsive: { since: string; op: string } | null = null;
  const hint = `restart the workspace: \`pyro workspace stop ${id} && pyro workspace start ${id}\``;
  const unresponsiveError = () =>
    new PyroError(
      "AGENT_UNRESPONSIVE",
      `the agent of workspace ${id} has not answered since ${unresponsive?.since} (it stopped responding during ${unresponsive?.op})`,
      { hint, details: { workspace_id: id, agent_unresponsive_since: unresponsive?.since } },
    );
  const markUnresponsive = (op: string, err: PyroError) => {
    if (unresponsive) return;
    const since = new Date().toISOString();
    unresponsive = { since, op };
    log(`agent unresponsive during ${op}: ${err.message}`);
    for (const s of [...active]) s.abort(err);
    void updateRecord(home, id, (r) => ({ ...r, agent_unresponsive_since: since })).catch(() => {});
    // An agent that was only stopped or starved answers this once it runs again.
    machine.conn.open({ op: "ping" }).done.then(
      () => {
        if (unresponsive?.since !== since) return;
        unresponsive = null;
        log("agent answers again");
        void updateRecord(home, id, (r) => ({ ...r, agent_unresponsive_since: null })).catch(() => {});
      },
      () => {},
    );
  };

  const forward = (client: ServerStream, clientConn: Connection) => {
    const req = client.request;
    const op = String(req.op ?? "");
    if (op.startsWith("sup.")) return handleLocal(client, op);
    if (unresponsive) return client.fail(unresponsiveError());
    const started = new Date().toISOString();
    const upstream = machine.conn.open(req);
    const call: WatchedCall = {
      op,
      timeoutMs: op === "exec" && typeof req.timeout_ms === "number" ? req.timeout_ms : undefined,
      started: Date.now(),
      lastProgress: Date.now(),
      pid: null,
    };
    active.add(upstream);
    const settled = new AbortController();
    const ended = new Promise<void>((res) => settled.signal.addEventListener("abort", () => res()));
    // Bulk data is relayed with bounded buffers: when the far side's write buffer fills,
    // stop reading from the near side until it drains (the OS then pushes back on the sender).
    // The terminal result must follow every relayed event: `done` can settle while events
    // of the same chunk still wait in the queue, so the answer waits for this pump.
    const relayed = (async () => {
      for await (const ev of upstream.events) {
        call.lastProgress = Date.now();
        if (ev.kind === "data") client.sendData(ev.bytes, ev.channel);
        else {
          if (ev.message.type === "started" && typeof ev.message.pid === "number") call.pid = ev.message.pid;
          client.sendJson(ev.message);
        }
        if ((clientConn.transport.bufferedBytes ?? 0) > WRITE_HIGH_WATER && agent.pauseReading) {
          pauseAgent();
          await clientConn.writable(LOW_WATER);
          resumeAgent();
        }
      }
    })();
    (async () => {
      try {
        for await (const part of client.input) {
          // After the call ended (answer or deadline), input is drained and dropped: the
          // client's connection must keep being read for its next call.
          if (settled.signal.aborted) continue;
          call.lastProgress = Date.now();
          upstream.sendData(part);
          if ((agent.bufferedBytes ?? 0) > WRITE_HIGH_WATER) {
            clientConn.transport.pauseReading?.();
            await Promise.race([machine.conn.writable(LOW_WATER), ended]);
            clientConn.transport.resumeReading?.();
          }
        }
        upstream.endInput();
      } catch {}
    })();
    client.onControl((m) => upstream.sendJson(m));
    // A client that vanishes takes its command with it.
    client.onAbandon(() => upstream.sendJson({ op: "signal", signal: "SIGKILL" }));
    void overdue(call, probe, settled.signal, hint).then((verdict) => {
      if (!verdict) return;
      if (verdict.agentDead) markUnresponsive(op, verdict.error);
      upstream.abort(verdict.error);
    });
    // The record's activity time is updated before the answer, so a `list` right after a
    // command already orders by it (concurrent updates are coalesced into one write).
    upstream.done
      .finally(() => {
        active.delete(upstream);
        settled.abort();
      })
      .then(
        async (result) => {
          await relayed;
          if (op === "exec") recordHistory(req, started, result);
          if (MUTATING.has(op)) await touch();
          client.result(result);
        },
        async (err) => {
          await relayed.catch(() => {});
          if (MUTATING.has(op)) await touch();
          client.fail(err);
        },
      );
  };

  // History survives stop/start: continue its numbering.
  let seq = existsSync(historyPath(home, id))
    ? readFileSync(historyPath(home, id), "utf8")
        .split("\n")
        .filter((l) => l.trim()).length
    : 0;
  const recordHistory = (req: Record<string, unknown>, started: string, result: Record<string, unknown>) => {
    seq += 1;
    const entry = {
      seq,
      command: req.command ?? null,
      argv: req.argv ?? null,
      cwd: req.cwd ?? null,
      started_at: started,
      exit_code: result.exit_code,
      timed_out: result.timed_out,
      duration_ms: result.duration_ms,
    };
    appendFileSync(historyPath(home, id), `${JSON.stringify(entry)}\n`);
  };
  // Coalesced: many concurrent commands cause at most one record write in flight plus one more.
  let touching: Promise<void> | null = null;
  let touchAgain = false;
  const touch = (): Promise<void> => {
    if (touching) {
      touchAgain = true;
      return touching;
    }
    touching = (async () => {
      do {
        touchAgain = false;
        await updateRecord(home, id, (r) => ({
          ...r,
          last_activity_at: new Date().toISOString(),
          command_count: seq,
        })).catch(() => {});
      } while (touchAgain);
      touching = null;
    })();
    return touching;
  };

  const handleLocal = (client: ServerStream, op: string) => {
    switch (op) {
      case "sup.status":
        return client.result({
          backend: machine.handle.backend,
          accelerator: machine.handle.accelerator,
          vmm_pid: machine.handle.pid,
          supervisor_pid: process.pid,
          kernel: machine.hello.kernel,
          boot_id: machine.hello.boot_id,
          agent_version: machine.hello.agent_version,
        });
      case "sup.stop":
        client.result({ stopping: true });
        return void finish("stopped by request");
      case "sup.delete":
        client.result({ deleting: true });
        return void finish("deleted", { deleteAfter: true });
      default:
        return client.fail(new PyroError("INVALID_INPUT", `unknown supervisor request ${op}`));
    }
  };

  const server = listenUnix(supervisorSocket(home, id), (ch) => {
    const clientConn: Connection = new Connection(ch, { onStream: (s) => forward(s, clientConn) });
  });
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
  writeFileSync(`${run}/${READY_FILE}`, String(process.pid));
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const)
    process.on(sig, () => void finish(`supervisor got ${sig}`));
}
