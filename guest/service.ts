/**
 * Services in the guest: one run of a named service is one process group (setsid), whose
 * output streams to the host and whose readiness is probed here, where the service lives.
 * The host (src/supervisor/services.ts) keeps the records and logs and decides restarts.
 *
 * Invariants:
 * - One run per name at a time: a second service.start of a running name is SERVICE_EXISTS.
 * - The service.start stream lives as long as the run: `started`, then exactly one verdict
 *   (`ready` or `not_ready`) unless the run ends first, stdout/stderr as data frames, and the
 *   result when the group's leader has ended (its output drained, at most DRAIN_MS more).
 * - Probes: the first at once, then every ready_interval_ms until ready_timeout_ms; each one
 *   bounded by PROBE_MAX_MS and by the time left. A failed verdict stops the group.
 * - Stopping (service.stop, a failed verdict) is TERM to the group, then KILL to whatever is
 *   left of it after the grace period. A client that abandons the stream, and the agent's
 *   exit (host compat), kill the group at once.
 * - The readiness file is resolved under /workspace like every path (race-free resolver).
 */
import { stat } from "node:fs/promises";
import type { ServerStream } from "../src/protocol/connection.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { Channel } from "../src/protocol/frame.ts";
import type { Request } from "../src/protocol/messages.ts";
import { resolveInRoot } from "./paths.ts";
import { secretEnv } from "./secrets.ts";
import { spawnUnprotected } from "./system.ts";

type ServiceStart = Extract<Request, { op: "service.start" }>;
type Readiness = NonNullable<ServiceStart["readiness"]>;

/** The longest one probe may take (a hung connect or command must not eat the whole timeout). */
const PROBE_MAX_MS = 5000;
/** After the leader exits, how long background children may keep the pipes open. */
const DRAIN_MS = 300;

interface Run {
  pid: number;
  exited: Promise<number>;
  stopping: boolean;
}

const runs = new Map<string, Run>();

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {}
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Host compat has no VM boundary: the agent's exit takes its services with it.
  process.on("exit", () => {
    for (const r of runs.values()) killGroup(r.pid, "SIGKILL");
  });
}

/** TERM to the group, KILL after `graceMs` to whatever is left of it. */
async function stopRun(run: Run, graceMs: number): Promise<void> {
  run.stopping = true;
  killGroup(run.pid, "SIGTERM");
  const gone = await Promise.race([run.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
  if (!gone || groupAlive(run.pid)) killGroup(run.pid, "SIGKILL");
  await run.exited;
}

export async function stopService(name: string, graceMs: number): Promise<{ stopped: boolean }> {
  const run = runs.get(name);
  if (!run) return { stopped: false };
  await stopRun(run, graceMs);
  return { stopped: true };
}

/** One probe: null when it passed, else why it did not. */
async function probeOnce(
  ctx: { root: string },
  r: Readiness,
  env: Record<string, string>,
  cwd: string,
  timeoutMs: number,
): Promise<string | null> {
  switch (r.type) {
    case "file": {
      try {
        const p = await resolveInRoot(ctx.root, r.path, { followFinalSymlink: true });
        return (await stat(p).catch(() => null)) ? null : `${r.path} does not exist yet`;
      } catch (err) {
        return (err as Error).message;
      }
    }
    case "tcp":
      return new Promise((resolve) => {
        let done = false;
        const finish = (why: string | null, sock?: { end(): void }) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          try {
            sock?.end();
          } catch {}
          resolve(why);
        };
        const timer = setTimeout(() => finish(`no answer on 127.0.0.1:${r.port}`), timeoutMs);
        Bun.connect({
          hostname: "127.0.0.1",
          port: r.port,
          socket: { open: (s) => finish(null, s), data() {}, error: (_s, e) => finish(e.message) },
        }).catch((e: Error) => finish(`127.0.0.1:${r.port}: ${e.message}`));
      });
    case "http":
      try {
        const res = await fetch(r.url, { redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
        await res.body?.cancel();
        return res.status >= 200 && res.status < 400 ? null : `${r.url} answered HTTP ${res.status}`;
      } catch (err) {
        return `${r.url}: ${(err as Error).message}`;
      }
    case "command": {
      let proc: Bun.Subprocess;
      try {
        proc = spawnUnprotected(() =>
          Bun.spawn(["/bin/sh", "-c", r.command], {
            cwd,
            env,
            stdin: "ignore",
            stdout: "ignore",
            stderr: "ignore",
            detached: true,
          }),
        );
      } catch (err) {
        return `cannot run the probe: ${(err as Error).message}`;
      }
      const timer = setTimeout(() => killGroup(proc.pid, "SIGKILL"), timeoutMs);
      const code = await proc.exited;
      clearTimeout(timer);
      killGroup(proc.pid, "SIGKILL");
      return code === 0 ? null : `the probe command exited ${proc.signalCode ?? code}`;
    }
  }
}

export async function startService(
  ctx: { root: string; baseEnv: Record<string, string> },
  req: ServiceStart,
  stream: ServerStream,
): Promise<void> {
  if (runs.has(req.service_name))
    throw new PyroError("SERVICE_EXISTS", `service ${req.service_name} is already running`);
  const cwd = req.cwd ? await resolveInRoot(ctx.root, req.cwd, { followFinalSymlink: true }) : ctx.root;
  const cwdStat = await stat(cwd).catch(() => null);
  if (!cwdStat) throw new PyroError("FILE_NOT_FOUND", `working directory ${req.cwd} does not exist`);
  if (!cwdStat.isDirectory())
    throw new PyroError("NOT_A_DIRECTORY", `working directory ${req.cwd} is not a directory`);
  if (stream.clientGone || runs.has(req.service_name)) return;
  const argv = req.argv ?? ["/bin/sh", "-c", req.command as string];
  // an undeclared secret fails before anything runs
  const env = { ...ctx.baseEnv, ...(req.env ?? {}), ...secretEnv(req.secret_env) };
  let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  try {
    // Commands never inherit the agent's OOM immunity (system.ts); detached = a new session.
    proc = spawnUnprotected(() =>
      Bun.spawn(argv, { cwd, env, stdin: "ignore", stdout: "pipe", stderr: "pipe", detached: true }),
    );
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === "ENOENT" ? "command not found" : e.code === "EACCES" ? "permission denied" : e.message;
    throw new PyroError("INVALID_INPUT", `cannot start service ${req.service_name}: ${argv[0]}: ${why}`);
  }
  installExitHook();
  const run: Run = { pid: proc.pid, exited: proc.exited, stopping: false };
  runs.set(req.service_name, run);
  stream.sendJson({ type: "started", pid: proc.pid });
  stream.onAbandon(() => killGroup(proc.pid, "SIGKILL"));

  const pump = async (src: ReadableStream<Uint8Array>, channel: number) => {
    for await (const chunk of src) stream.sendData(chunk, channel);
  };
  const pumps = Promise.all([pump(proc.stdout, Channel.STDOUT), pump(proc.stderr, Channel.STDERR)]);

  let ready = false;
  let leaderExited = false;
  void proc.exited.then(() => {
    leaderExited = true;
  });
  if (!req.readiness) {
    ready = true;
    stream.sendJson({ type: "ready" });
  } else {
    const readiness = req.readiness;
    void (async () => {
      const deadline = Date.now() + req.ready_timeout_ms;
      let why = "no probe ran";
      while (!leaderExited && !run.stopping) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const round = Date.now();
        why = (await probeOnce(ctx, readiness, env, cwd, Math.min(left, PROBE_MAX_MS))) ?? "";
        if (leaderExited || run.stopping) return;
        if (why === "") {
          ready = true;
          stream.sendJson({ type: "ready" });
          return;
        }
        const wait = Math.min(req.ready_interval_ms - (Date.now() - round), deadline - Date.now());
        if (wait > 0) await Promise.race([Bun.sleep(wait), proc.exited]);
      }
      if (leaderExited || run.stopping) return;
      stream.sendJson({ type: "not_ready", reason: why });
      await stopRun(run, req.stop_grace_ms);
    })();
  }

  const code = await proc.exited;
  await Promise.race([pumps, Bun.sleep(DRAIN_MS)]);
  // Nothing of a run outlives its leader (a restart must find the ports free).
  killGroup(proc.pid, "SIGKILL");
  runs.delete(req.service_name);
  const signal = proc.signalCode ? String(proc.signalCode) : null;
  stream.result({ exit_code: signal ? null : code, signal, ready });
}
