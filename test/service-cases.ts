/**
 * Service cases shared by the host-compat test (test/service.test.ts) and the real-guest test
 * (test/service-guest.test.ts): each drives the compiled CLI against a started workspace and
 * asserts what docs/public-contract.md ("Services") says. Every case uses its own service
 * names, so the cases share one workspace (the reset case runs last).
 */
import { expect } from "bun:test";
import type { PyroResult } from "./helpers.ts";

export type Run = (args: string[]) => Promise<PyroResult>;

const PATIENCE_MS = 120_000;

function start(run: Run, ws: string, name: string, flags: string[], cmd: string): Promise<PyroResult> {
  return run(["workspace", "service", "start", ws, name, "--json", ...flags, "--", "sh", "-c", cmd]);
}

async function status(run: Run, ws: string, name: string): Promise<Record<string, any>> {
  const r = await run(["workspace", "service", "status", ws, name, "--json"]);
  expect(r.code).toBe(0);
  return r.json;
}

async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + PATIENCE_MS;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await Bun.sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Command lines of the workspace's processes (through exec, so it works in a guest too). */
async function processLines(run: Run, ws: string): Promise<string> {
  const r = await run([
    "workspace",
    "exec",
    ws,
    "--",
    "sh",
    "-c",
    'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done',
  ]);
  expect(r.code).toBe(0);
  return r.stdout;
}

/** Ready by a file probe, seen by status, list, workspace status and logs; stopped with TERM. */
export async function lifecycle(run: Run, ws: string): Promise<void> {
  const started = await start(
    run,
    ws,
    "filer",
    ["--ready-file", "svc-ready", "--ready-interval-ms", "100"],
    "echo line-1; echo line-2; echo oops >&2; sleep 0.3; touch svc-ready; exec sleep 6001",
  );
  expect(started.code).toBe(0);
  expect(started.json).toMatchObject({
    service_name: "filer",
    state: "ready",
    restart_count: 0,
    exit_code: null,
  });
  expect(Date.parse(started.json.ready_at)).toBeGreaterThanOrEqual(Date.parse(started.json.started_at));
  expect(started.json.readiness).toEqual({ type: "file", path: "svc-ready" });

  expect(await status(run, ws, "filer")).toMatchObject({ state: "ready" });
  const list = await run(["workspace", "service", "list", ws, "--json"]);
  expect(list.json.services.map((s: { service_name: string }) => s.service_name)).toContain("filer");
  expect((await run(["workspace", "status", ws, "--json"])).json.services).toBeGreaterThanOrEqual(1);
  const wl = await run(["workspace", "list", "--json"]);
  expect(
    wl.json.workspaces.find((w: { workspace_id: string }) => w.workspace_id === ws).services,
  ).toBeGreaterThanOrEqual(1);
  expect(await processLines(run, ws)).toContain("sleep 6001");

  const stopped = await run(["workspace", "service", "stop", ws, "filer", "--json"]);
  expect(stopped.code).toBe(0);
  expect(stopped.json).toMatchObject({
    state: "stopped",
    signal: "SIGTERM",
    end_reason: "stopped by request",
  });
  expect(await processLines(run, ws)).not.toContain("sleep 6001");
  const again = await run(["workspace", "service", "stop", ws, "filer", "--json"]);
  expect([again.code, again.json.state]).toEqual([0, "stopped"]);
  // the human rendering names the state
  expect((await run(["workspace", "service", "list", ws])).stdout).toMatch(/filer\s+stopped/);
}

/** --tail-lines and reads by offset reassemble the logs. */
export async function logs(run: Run, ws: string): Promise<void> {
  const r = await start(
    run,
    ws,
    "talker",
    [],
    "for i in $(seq 1 50); do echo out-$i; echo err-$i >&2; done; exec sleep 6002",
  );
  expect(r.code).toBe(0);
  await until("50 lines logged", async () => (await status(run, ws, "talker")).stdout_bytes >= 50 * 6);
  const tail = await run(["workspace", "service", "logs", ws, "talker", "--tail-lines", "3", "--json"]);
  expect(tail.code).toBe(0);
  expect(tail.json.stdout).toBe("out-48\nout-49\nout-50\n");
  expect(tail.json.stderr).toBe("err-48\nerr-49\nerr-50\n");
  expect(tail.json.tail_lines).toBe(3);
  const human = await run(["workspace", "service", "logs", ws, "talker", "--tail-lines", "1"]);
  expect(human.stdout).toContain("out-50\n");
  expect(human.stdout).not.toContain("out-49");

  let offset = 0;
  let all = "";
  for (let i = 0; i < 100; i++) {
    const part = await run([
      "workspace",
      "service",
      "logs",
      ws,
      "talker",
      "--offset",
      String(offset),
      "--max-bytes",
      "37",
      "--json",
    ]);
    expect(part.code).toBe(0);
    all += part.json.stdout;
    if (part.json.next_offset === offset) break;
    offset = part.json.next_offset;
  }
  expect(all).toBe(Array.from({ length: 50 }, (_, i) => `out-${i + 1}\n`).join(""));
  const past = await run(["workspace", "service", "logs", ws, "talker", "--offset", "999999", "--json"]);
  expect([past.code, past.json.code]).toEqual([65, "OFFSET_OUT_OF_RANGE"]);
  expect((await run(["workspace", "service", "stop", ws, "talker"])).code).toBe(0);
}

/** A probe that never passes: SERVICE_NOT_READY with the log tail, recorded failed, process gone. */
export async function neverReady(run: Run, ws: string): Promise<void> {
  // the positive check: the same kind of probe passes when its port answers is the http case;
  // here nothing listens on the port
  const r = await start(
    run,
    ws,
    "sleepy",
    ["--ready-tcp", "9", "--ready-timeout-seconds", "8", "--ready-interval-ms", "200"],
    "echo booting-sleepy; echo config-missing >&2; exec sleep 6003",
  );
  expect([r.code, r.json.code]).toEqual([65, "SERVICE_NOT_READY"]);
  expect(r.json.message).toContain("booting-sleepy");
  expect(r.json.message).toContain("config-missing");
  expect(r.json.message).toContain("127.0.0.1:9");
  const s = await status(run, ws, "sleepy");
  expect(s.state).toBe("failed");
  expect(s.end_reason).toContain("not ready within 8 s");
  expect(await processLines(run, ws)).not.toContain("sleep 6003");

  // exiting before ready is a failure too, with the exit code
  const quick = await start(run, ws, "quitter", ["--ready-file", "never"], "echo bye; exit 7");
  expect([quick.code, quick.json.code]).toEqual([65, "SERVICE_NOT_READY"]);
  expect(quick.json.message).toContain("exit code 7");
  expect((await status(run, ws, "quitter")).exit_code).toBe(7);
}

/** restart on-failure: a crashing service is started again with backoff; stop cancels it. */
export async function restarts(run: Run, ws: string): Promise<void> {
  const r = await start(run, ws, "crasher", ["--restart", "on-failure"], "echo run-$$; sleep 0.5; exit 3");
  expect(r.code).toBe(0);
  expect(r.json).toMatchObject({ state: "ready", restart: "on-failure", restart_count: 0 });
  await until("two restarts", async () => (await status(run, ws, "crasher")).restart_count >= 2);
  const s = await status(run, ws, "crasher");
  expect(s.exit_code === 3 || s.exit_code === null).toBe(true);
  // the third run's line may still be on its way when its start is counted
  await until("three runs logged", async () => {
    const l = await run(["workspace", "service", "logs", ws, "crasher", "--json"]);
    return (l.json.stdout.match(/run-\d+/g) ?? []).length >= 3;
  });
  const stopped = await run(["workspace", "service", "stop", ws, "crasher", "--json"]);
  expect([stopped.code, stopped.json.state]).toEqual([0, "stopped"]);
  const count = stopped.json.restart_count;
  await Bun.sleep(3000);
  expect(await status(run, ws, "crasher")).toMatchObject({ state: "stopped", restart_count: count });

  // a service that exits 0 is exited, not restarted
  const done = await start(run, ws, "oneshot", ["--restart", "on-failure"], "exit 0");
  expect(done.code).toBe(0);
  await until("oneshot exited", async () => (await status(run, ws, "oneshot")).state === "exited");
  expect((await status(run, ws, "oneshot")).restart_count).toBe(0);
}

/** Bad input: stable codes, nothing half-made. */
export async function badInput(run: Run, ws: string): Promise<void> {
  const ok = await start(run, ws, "dup", [], "exec sleep 6004");
  expect(ok.code).toBe(0);
  const dup = await start(run, ws, "dup", [], "exec sleep 6005");
  expect([dup.code, dup.json.code]).toEqual([65, "SERVICE_EXISTS"]);
  expect(await processLines(run, ws)).not.toContain("sleep 6005");
  expect((await run(["workspace", "service", "stop", ws, "dup"])).code).toBe(0);

  const before = (await run(["workspace", "service", "list", ws, "--json"])).json.count;
  const unknown = await run(["workspace", "service", "status", ws, "nosuch", "--json"]);
  expect([unknown.code, unknown.json.code]).toEqual([66, "SERVICE_NOT_FOUND"]);
  const unknownStop = await run(["workspace", "service", "stop", ws, "nosuch", "--json"]);
  expect([unknownStop.code, unknownStop.json.code]).toEqual([66, "SERVICE_NOT_FOUND"]);
  const badName = await start(run, ws, "Bad_Name", [], "true");
  expect([badName.code, badName.json.code]).toEqual([64, "INVALID_INPUT"]);
  const two = await start(run, ws, "two", ["--ready-file", "x", "--ready-tcp", "80"], "true");
  expect([two.code, two.json.code]).toEqual([64, "INVALID_INPUT"]);
  const badPort = await start(run, ws, "pub", ["--publish", "70000"], "true");
  expect([badPort.code, badPort.json.code]).toEqual([64, "INVALID_INPUT"]);
  const badCwd = await run([
    "workspace",
    "service",
    "start",
    ws,
    "nocwd",
    "--cwd",
    "missing-dir",
    "--json",
    "--",
    "true",
  ]);
  expect([badCwd.code, badCwd.json.code]).toEqual([66, "FILE_NOT_FOUND"]);
  const outside = await run([
    "workspace",
    "service",
    "start",
    ws,
    "esc",
    "--cwd",
    "/etc",
    "--json",
    "--",
    "true",
  ]);
  expect([outside.code, outside.json.code]).toEqual([65, "PATH_OUTSIDE_WORKSPACE"]);
  // nothing of the refused starts was recorded
  expect((await run(["workspace", "service", "list", ws, "--json"])).json.count).toBe(before);
}

/** --publish under a policy other than egress+published-ports (this workspace's is off). */
export async function publishRefused(run: Run, ws: string): Promise<void> {
  const before = (await run(["workspace", "service", "list", ws, "--json"])).json.count;
  const r = await start(run, ws, "pub", ["--publish", "8000"], "true");
  expect([r.code, r.json.code]).toEqual([77, "PUBLISH_NOT_ALLOWED"]);
  expect(r.json.message).toContain("egress+published-ports");
  expect((await run(["workspace", "service", "list", ws, "--json"])).json.count).toBe(before);
}

/** The summary lists services; reset ends them and clears their records. */
export async function goneAfterReset(run: Run, ws: string): Promise<void> {
  const r = await start(run, ws, "survivor", [], "exec sleep 6006");
  expect(r.code).toBe(0);
  const summary = await run(["workspace", "summary", ws, "--json"]);
  expect(summary.json.services.map((s: { service_name: string }) => s.service_name)).toContain("survivor");
  expect((await run(["workspace", "reset", ws])).code).toBe(0);
  expect((await run(["workspace", "service", "list", ws, "--json"])).json).toMatchObject({
    services: [],
    count: 0,
  });
  expect((await run(["workspace", "status", ws, "--json"])).json.services).toBe(0);
  expect((await run(["workspace", "summary", ws, "--json"])).json.services).toEqual([]);
  expect(await processLines(run, ws)).not.toContain("sleep 6006");
  const gone = await run(["workspace", "service", "status", ws, "survivor", "--json"]);
  expect([gone.code, gone.json.code]).toEqual([66, "SERVICE_NOT_FOUND"]);
}

/** secret_env: the service gets the value; its logs show [REDACTED:NAME]. (Workspace made with SVC_TOKEN.) */
export async function secretEnv(run: Run, ws: string, value: string): Promise<void> {
  const r = await start(
    run,
    ws,
    "secretive",
    ["--secret-env", "SVC_TOKEN=TOKEN", "--ready-command", 'test -n "$TOKEN"'],
    'echo "token=$TOKEN"; echo "len=$(printf %s "$TOKEN" | wc -c)"; exec sleep 6007',
  );
  expect(r.code).toBe(0);
  expect(r.json.state).toBe("ready");
  await until("the token logged", async () => (await status(run, ws, "secretive")).stdout_bytes > 0);
  const l = await run(["workspace", "service", "logs", ws, "secretive", "--json"]);
  expect(l.json.stdout).toContain("token=[REDACTED:SVC_TOKEN]");
  expect(l.json.stdout).toContain(`len=${value.length}`);
  expect(l.stdout).not.toContain(value);
  const undeclared = await start(run, ws, "nosecret", ["--secret-env", "NOPE"], "true");
  expect([undeclared.code, undeclared.json.code]).toEqual([66, "SECRET_NOT_FOUND"]);
  expect((await run(["workspace", "service", "stop", ws, "secretive"])).code).toBe(0);
}

/**
 * A python3 http.server made ready by an http probe and published on an ephemeral 127.0.0.1
 * port answers from the host; after stop the port refuses; a taken host port is PORT_IN_USE
 * with nothing recorded. The workspace has policy egress+published-ports.
 */
export async function publish(run: Run, ws: string, guestPort: number): Promise<void> {
  const r = await start(
    run,
    ws,
    "web",
    [
      "--ready-http",
      `http://127.0.0.1:${guestPort}/`,
      "--publish",
      String(guestPort),
      "--ready-interval-ms",
      "200",
      "--ready-timeout-seconds",
      "60",
    ],
    `echo served-from-service > index.html; exec python3 -m http.server ${guestPort} --bind 127.0.0.1`,
  );
  expect(r.code).toBe(0);
  expect(r.json.state).toBe("ready");
  expect(r.json.published_ports).toHaveLength(1);
  const p = r.json.published_ports[0];
  expect(p).toMatchObject({ guest_port: guestPort, host: "127.0.0.1" });
  expect(p.host_port).toBeGreaterThan(0);
  expect((await status(run, ws, "web")).published_ports).toEqual([p]);
  const res = await fetch(`http://127.0.0.1:${p.host_port}/index.html`);
  expect(res.status).toBe(200);
  expect(await res.text()).toBe("served-from-service\n");

  // a host port that is taken: PORT_IN_USE, nothing started or recorded
  const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    const busy = await start(
      run,
      ws,
      "web2",
      ["--publish", `${taken.port}:${guestPort + 1}`],
      "exec sleep 6008",
    );
    expect([busy.code, busy.json.code]).toEqual([75, "PORT_IN_USE"]);
    const gone = await run(["workspace", "service", "status", ws, "web2", "--json"]);
    expect(gone.json.code).toBe("SERVICE_NOT_FOUND");
  } finally {
    taken.stop(true);
  }

  const stopped = await run(["workspace", "service", "stop", ws, "web", "--json"]);
  expect([stopped.code, stopped.json.state, stopped.json.published_ports]).toEqual([0, "stopped", []]);
  const refused = await fetch(`http://127.0.0.1:${p.host_port}/`).then(
    () => "answered",
    () => "refused",
  );
  expect(refused).toBe("refused");
}

/**
 * kill -9 of the supervisor while a published service runs: no listener and no service process
 * survive, and the service reads `stopped` with the reason. Leaves the workspace stopped.
 */
export async function supervisorKilled(run: Run, ws: string, home: string, guestPort: number): Promise<void> {
  const marker = `${guestPort} --bind 127.0.0.1`;
  const r = await start(
    run,
    ws,
    "orphan",
    ["--ready-tcp", String(guestPort), "--publish", String(guestPort)],
    `exec python3 -m http.server ${marker}`,
  );
  expect(r.code).toBe(0);
  const hostPort = r.json.published_ports[0].host_port;
  expect((await fetch(`http://127.0.0.1:${hostPort}/`)).status).toBe(200);
  const rec = JSON.parse(await Bun.file(`${home}/workspaces/${ws}/workspace.json`).text());
  process.kill(rec.supervisor_pid, "SIGKILL");
  await until("the supervisor gone", async () => {
    try {
      process.kill(rec.supervisor_pid, 0);
      return false;
    } catch {
      return true;
    }
  });
  const refused = await fetch(`http://127.0.0.1:${hostPort}/`).then(
    () => "answered",
    () => "refused",
  );
  expect(refused).toBe("refused");
  const s = await status(run, ws, "orphan");
  expect(s.state).toBe("stopped");
  expect(s.published_ports).toEqual([]);
  expect(s.end_reason).toContain("machine ended");
  expect((await run(["workspace", "status", ws, "--json"])).json).toMatchObject({
    state: "stopped",
    services: 0,
  });
}

/**
 * Rotation: 17 MiB of stdout keeps the last 8-16 MiB (the current file and <stream>.1); a read
 * from offset 0 starts where the kept bytes start, with truncated: true; the tail is the end.
 */
export async function rotation(run: Run, ws: string, home: string): Promise<void> {
  const total = 17 * 1024 * 1024;
  const r = await start(run, ws, "chatty", [], `yes 0123456789abcdef | head -c ${total}; exec sleep 6009`);
  expect(r.code).toBe(0);
  await until("17 MiB logged", async () => (await status(run, ws, "chatty")).stdout_bytes >= total);
  const dir = `${home}/workspaces/${ws}/logs/services/chatty`;
  const current = Bun.file(`${dir}/stdout`).size;
  const previous = Bun.file(`${dir}/stdout.1`).size;
  expect(current).toBeLessThanOrEqual(8 * 1024 * 1024);
  expect(previous).toBeLessThanOrEqual(8 * 1024 * 1024);
  expect(current + previous).toBeLessThan(total);
  const first = await run([
    "workspace",
    "service",
    "logs",
    ws,
    "chatty",
    "--offset",
    "0",
    "--max-bytes",
    "17",
    "--json",
  ]);
  expect(first.json).toMatchObject({ truncated: true, offset: total - current - previous });
  expect(first.json.stdout).toHaveLength(17);
  const tail = await run(["workspace", "service", "logs", ws, "chatty", "--tail-lines", "2", "--json"]);
  expect(tail.json.stdout).toBe("0123456789abcdef\n0123456789abcdef\n");
  expect(tail.json.stdout_bytes).toBe(total);
  expect((await run(["workspace", "service", "stop", ws, "chatty"])).code).toBe(0);
}
