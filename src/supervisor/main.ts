/**
 * The per-workspace supervisor: `pyro __supervise --home H --id ID`, detached. It owns the
 * VMM (or host agent), holds the one agent channel and serves any number of local clients
 * on run/supervisor.sock. The pieces, in the order a supervisor's life uses them:
 * - boot.ts: boot + handshake; tell the creator the outcome (boot-error.json or a started
 *   record followed by supervisor.ready);
 * - relay.ts: each client call relayed onto the agent connection, under flow control and
 *   with the result after every event; deadline.ts judges overdue calls and agent.ts holds
 *   the agent's flow-control and liveness state (an agent found unresponsive fails every
 *   call fast with AGENT_UNRESPONSIVE until it answers again or the workspace restarts);
 * - local.ts: the supervisor's own `sup.*` requests;
 * - history.ts: the command history and `command_count` (activity time is invoke()'s);
 * - detached.ts: detached execs (`sup.exec.*`), run by the supervisor and spooled to files;
 * - secrets: sent to the agent at boot (boot.ts, secrets.set); their Redactor (manager/redact.ts)
 *   is applied by relay.ts (exec output, errors), history.ts, detached.ts and shells.ts;
 * - shells.ts: persistent shells (`sup.shell.*`), their output buffered here for any client;
 * - services.ts: services (`sup.service.*`): runs, readiness, restarts, logs and ports;
 * - forward.ts: published ports (`sup.forward.*`), carried to the guest over the agent channel;
 * - ending.ts: the one end (request, TTL, signal, machine exit), the VMM shut down with it
 *   and the record's final state written.
 */
import { fault, setFaultRole } from "../base/fault.ts";
import { mark } from "../base/profile.ts";
import { supervisorSocket } from "../manager/paths.ts";
import { readRecord } from "../manager/record.ts";
import { workspaceRedactor } from "../manager/secrets.ts";
import { removeWorkspaceFiles, updateRecord } from "../manager/store.ts";
import { call } from "../protocol/call.ts";
import { Connection } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { AgentLink } from "./agent.ts";
import { announceStarted, bootMachine } from "./boot.ts";
import { DetachedExecs } from "./detached.ts";
import { Ending, watchCreator } from "./ending.ts";
import { PortForwards } from "./forward.ts";
import { CommandHistory } from "./history.ts";
import { IdleTracker } from "./idle.ts";
import { listenUnix } from "./listen.ts";
import { serveLocal } from "./local.ts";
import { log } from "./log.ts";
import { keepSessionsWith, keptSessions, type PausedSessions, saveMachine } from "./pause.ts";
import { relayCall } from "./relay.ts";
import { Services } from "./services.ts";
import { Shells } from "./shells.ts";

/** `resume`: restore the paused machine state instead of booting (src/supervisor/pause.ts). */
export async function supervise(home: string, id: string, opts: { resume?: boolean } = {}): Promise<void> {
  setFaultRole("supervisor");
  mark("sup.supervise");
  const record = readRecord(home, id);
  if (!record) throw new PyroError("WORKSPACE_NOT_FOUND", `no workspace ${id}`);
  // known from the start, so a boot under way can be found (and stopped) by its pid
  await updateRecord(home, id, (r) => ({ ...r, supervisor_pid: process.pid }));

  // An abandoned create: during boot, exit (the VMM dies with us, pdeathsig) with the files
  // removed; once up, the ordinary end with the files removed.
  let ending: Ending | null = null;
  watchCreator(home, id, () => {
    log("the creating process died before the create finished: discarding the workspace");
    if (ending) return ending.end("create abandoned", { deleteAfter: true });
    removeWorkspaceFiles(home, id);
    process.exit(1);
  });
  // what the pause kept running (read before the boot, which drops the saved state)
  const kept = opts.resume ? keptSessions(home, id) : null;
  mark("sup.record");
  const machine = await bootMachine(home, record, opts);
  if (!machine) process.exit(1);
  // The agent has the workspace's secrets (boot.ts); every output this supervisor relays or
  // writes goes through their redactor (manager/redact.ts).
  const redactor = workspaceRedactor(home, id);
  ending = new Ending(home, id, machine);
  ending.armTtl(record.expires_at);

  const agent = new AgentLink(machine.conn, home, id, machine.handle);
  const history = new CommandHistory(home, id, redactor);
  const adopt = kept?.ok ? kept.sessions : null;
  const execs = new DetachedExecs(
    home,
    id,
    agent,
    history,
    redactor,
    new Set(adopt?.execs.map((e) => e.exec_id)),
  );
  // a pause keeps them (pause.ts); any other end ends them
  ending.onEnd((reason) => ending?.pausing || execs.endAll(reason));
  const forwards = new PortForwards(agent);
  ending.onEnd(() => forwards.closeAll());
  const shells = new Shells(agent, redactor);
  const services = new Services(
    home,
    id,
    agent,
    forwards,
    redactor,
    new Set(adopt?.services.map((s) => s.service_name)),
  );
  ending.onEnd((reason) => ending?.pausing || services.endAll(reason));
  let suspended: PausedSessions | null = null;
  keepSessionsWith({
    names: () => ({
      shell_ids: shells.runningIds,
      service_names: services.runningNames,
      exec_pids: execs.runningPids,
    }),
    suspend: () => {
      suspended = {
        format: 1,
        shells: shells.suspend(),
        services: services.suspend(),
        execs: execs.suspend(),
      };
      return suspended;
    },
    endSuspended: (reason) => {
      services.endSuspended(reason);
      if (suspended) execs.endSuspended(suspended.execs, reason);
    },
  });
  if (opts.resume) {
    // the resumed machine's agent holds what the pause kept: adopt it, end the rest
    if (adopt) {
      await shells.adopt(adopt.shells);
      await services.adopt(adopt.services);
      await execs.adopt(adopt.execs);
    } else if (kept && !kept.ok) log(`the paused sessions cannot be adopted: ${kept.reason}`);
    await call(machine.conn, { op: "sys.release" }).then(
      (r) => r.ended && log(`${r.ended} kept sessions were not adopted and ended`),
      () => {},
    );
  }
  // auto_pause_after_seconds (idle.ts): paused like `sup.pause` once idle that long
  const idle = new IdleTracker(home, id, {
    canPause: !!machine.handle.saveState,
    busy: () =>
      shells.live
        ? "a shell's process runs"
        : services.runningCount
          ? "a service runs"
          : execs.runningCount
            ? "a detached exec runs"
            : forwards.list().length
              ? "a port is published"
              : null,
    pause: (why) => ending?.end(`paused: ${why}`, { pause: () => saveMachine(home, id, machine, "idle") }),
  });
  ending.onEnd(() => idle.stop());
  const server = listenUnix(supervisorSocket(home, id), (ch) => {
    const clientConn: Connection = new Connection(ch, {
      onStream: (client) => {
        idle.track(client);
        const op = String(client.request.op ?? "");
        if (op.startsWith("sup.exec.")) execs.serve(client, op);
        else if (op.startsWith("sup.shell.")) shells.serve(client, op);
        else if (op.startsWith("sup.forward.")) forwards.serve(client, op);
        else if (op.startsWith("sup.service.")) services.serve(client, op);
        else if (op.startsWith("sup.")) serveLocal(client, op, machine, ending, home, id);
        else relayCall(client, clientConn, agent, history.hookFor(client.request), redactor);
      },
    });
  });
  ending.onEnd(() => server.stop());
  fault("boot.agent-hello", () => machine.handle.pid);
  mark("sup.services");
  await announceStarted(home, id, machine);
  mark("sup.announced");
  idle.start();
  ending.trapSignals();
}
