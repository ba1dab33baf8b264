/**
 * The per-workspace supervisor: `pyro __supervise --home H --id ID`, detached. It owns the
 * VMM (or host agent), holds the one agent channel and serves any number of local clients
 * on run/supervisor.sock, re-numbering their streams onto the agent connection. It records
 * history and activity, enforces the TTL, and writes the final state when the machine ends.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { prepareBoot } from "../manager/boot.ts";
import { type Machine, startMachine } from "../manager/machine.ts";
import { BOOT_ERROR_FILE, historyPath, READY_FILE, runDir, supervisorSocket } from "../manager/paths.ts";
import { readRecord } from "../manager/record.ts";
import { updateRecord } from "../manager/store.ts";
import { Connection, type ServerStream, WRITE_HIGH_WATER } from "../protocol/connection.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";
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
  const forward = (client: ServerStream, clientConn: Connection) => {
    const req = client.request;
    const op = String(req.op ?? "");
    if (op.startsWith("sup.")) return handleLocal(client, op);
    const started = new Date().toISOString();
    const upstream = machine.conn.open(req);
    const agent = machine.conn.transport;
    // Bulk data is relayed with bounded buffers: when the far side's write buffer fills,
    // stop reading from the near side until it drains (the OS then pushes back on the sender).
    // The terminal result must follow every relayed event: `done` can settle while events
    // of the same chunk still wait in the queue, so the answer waits for this pump.
    const relayed = (async () => {
      for await (const ev of upstream.events) {
        if (ev.kind === "data") client.sendData(ev.bytes, ev.channel);
        else client.sendJson(ev.message);
        if ((clientConn.transport.bufferedBytes ?? 0) > WRITE_HIGH_WATER && agent.pauseReading) {
          agent.pauseReading();
          await clientConn.writable(LOW_WATER);
          agent.resumeReading?.();
        }
      }
    })();
    (async () => {
      try {
        for await (const part of client.input) {
          upstream.sendData(part);
          if ((agent.bufferedBytes ?? 0) > WRITE_HIGH_WATER) {
            clientConn.transport.pauseReading?.();
            await machine.conn.writable(LOW_WATER);
            clientConn.transport.resumeReading?.();
          }
        }
        upstream.endInput();
      } catch {}
    })();
    client.onControl((m) => upstream.sendJson(m));
    // A client that vanishes takes its command with it.
    client.onAbandon(() => upstream.sendJson({ op: "signal", signal: "SIGKILL" }));
    // The record's activity time is updated before the answer, so a `list` right after a
    // command already orders by it (concurrent updates are coalesced into one write).
    upstream.done.then(
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
