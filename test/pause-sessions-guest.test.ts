/**
 * Pause/resume keeps what the supervisor runs on the agent (a real guest, QEMU; TCG here):
 * a shell running a counter loop, a service with a published port answering HTTP and a
 * detached exec counting all carry on across pause → resume from memory — the shell's
 * output goes on from the same cursor with the same pid, the service is still ready with
 * the same pid on the same host port, the detached exec runs on and ends with its whole
 * output spooled. A resume that falls back to a cold boot ends them truthfully.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { closeSync, openSync, readSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { pyro } from "./helpers.ts";

let home = "";
let ws = "";
const run = (args: string[]) => pyro(args, { home });

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  const c = await run([
    "workspace",
    "create",
    "debian:12",
    "--name",
    "pause-sessions",
    "--mem-mib",
    "512",
    "--network-policy",
    "egress+published-ports",
    "--json",
  ]);
  expect(c.code).toBe(0);
  expect(c.json.execution_mode).toBe("guest");
  ws = c.json.workspace_id;
}, 1_800_000);

afterAll(async () => {
  if (ws) await run(["workspace", "delete", ws]);
});

async function shellRead(sh: string, cursor?: number) {
  const args = ["workspace", "shell", "read", ws, sh, "--json", "--wait-for-idle-ms", "300"];
  if (cursor !== undefined) args.push("--cursor", String(cursor));
  const r = await run(args);
  expect(r.code).toBe(0);
  return r.json as { output: string; next_cursor: number; cursor: number; truncated: boolean; state: string };
}

const counts = (out: string) => [...out.matchAll(/c(\d+)\b/g)].map((m) => Number(m[1]));

async function serviceStatus(name: string) {
  const r = await run(["workspace", "service", "status", ws, name, "--json"]);
  expect(r.code).toBe(0);
  return r.json;
}

async function execState(execId: string, wait = 0) {
  return run(["workspace", "exec-wait", ws, execId, "--timeout-seconds", String(wait), "--json"]);
}

async function execOutput(execId: string): Promise<string> {
  const r = await run([
    "workspace",
    "exec-read",
    ws,
    execId,
    "--stream",
    "stdout",
    "--max-bytes",
    "1000000",
    "--json",
  ]);
  expect(r.code).toBe(0);
  return String(r.json.data);
}

guest.describe("real guest: pause keeps shells, services and detached execs", () => {
  let sh = "";
  let shellPid = "";
  let cursor = 0;
  let lastCount = 0;
  let servicePid = 0;
  let hostPort = 0;
  let execId = "";

  test("real guest: a shell, a published service and a detached exec run on across pause and resume", async () => {
    // a shell counting
    const o = await run(["workspace", "shell", "open", ws, "--json"]);
    expect(o.code).toBe(0);
    sh = o.json.shell_id;
    const w = await run([
      "workspace",
      "shell",
      "write",
      ws,
      sh,
      "--input",
      "echo pid=$$; i=0; while :; do i=$((i+1)); echo c$i; sleep 0.3; done",
    ]);
    expect(w.code).toBe(0);
    // a service answering HTTP on a published port
    const s = await run([
      "workspace",
      "service",
      "start",
      ws,
      "web",
      "--ready-http",
      "http://127.0.0.1:8000/",
      "--publish",
      "8000",
      "--ready-interval-ms",
      "200",
      "--ready-timeout-seconds",
      "90",
      "--json",
      "--",
      "perl",
      "-MIO::Socket::INET",
      "-e",
      // debian:12 has perl-base, not python3: a tiny HTTP/1.0 server
      'my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 8000, Listen => 5, ReuseAddr => 1) or die "listen: $!"; $| = 1; print "listening\n"; while (my $c = $s->accept) { while (<$c>) { last if /^\r?$/ } print $c "HTTP/1.0 200 OK\r\nContent-Length: 20\r\n\r\nserved-across-pause\n"; close $c }',
    ]);
    if (s.code !== 0) throw new Error(`service start failed: ${s.stdout}${s.stderr}`);
    expect(s.json.state).toBe("ready");
    servicePid = s.json.pid;
    hostPort = s.json.published_ports[0].host_port;
    expect(await (await fetch(`http://127.0.0.1:${hostPort}/index.html`)).text()).toBe(
      "served-across-pause\n",
    );
    // a detached exec counting for a while
    const d = await run([
      "workspace",
      "exec",
      ws,
      "--detach",
      "--json",
      "--",
      "sh",
      "-c",
      "i=0; while [ $i -lt 120 ]; do i=$((i+1)); echo d$i; sleep 0.25; done; echo done",
    ]);
    expect(d.code).toBe(0);
    execId = d.json.exec_id;

    await Bun.sleep(2000);
    const before = await shellRead(sh);
    shellPid = /pid=(\d+)/.exec(before.output)?.[1] ?? "";
    expect(Number(shellPid)).toBeGreaterThan(1);
    cursor = before.next_cursor;
    lastCount = Math.max(...counts(before.output));
    expect(lastCount).toBeGreaterThan(0);
    expect((await execState(execId)).json.state).toBe("running");

    const p = await run(["workspace", "pause", ws, "--json"]);
    expect(p.code).toBe(0);
    expect(p.json.state).toBe("paused");
    // paused: the published port does not answer (the probe for "answers again" below)
    await expect(fetch(`http://127.0.0.1:${hostPort}/index.html`)).rejects.toThrow();

    const r = await run(["workspace", "resume", ws, "--json"]);
    expect(r.code).toBe(0);
    expect(r.json.resumed_from).toBe("memory");

    // the shell: same process, its output goes on from the same cursor, the counter went on
    await Bun.sleep(1500);
    const after = await shellRead(sh, cursor);
    expect(after.state).toBe("running");
    expect(after.cursor).toBe(cursor);
    expect(after.truncated).toBe(false);
    const next = counts(after.output);
    expect(next.length).toBeGreaterThan(0);
    expect(next[0]).toBe(lastCount + 1);
    const pidNow = await run([
      "workspace",
      "exec",
      ws,
      "--json",
      "--",
      "sh",
      "-c",
      `kill -0 ${shellPid} && echo alive`,
    ]);
    expect(pidNow.json.stdout).toBe("alive\n");

    // the service: still ready, same pid, answering on the same host port
    const st = await serviceStatus("web");
    expect(st.state).toBe("ready");
    expect(st.pid).toBe(servicePid);
    expect(st.published_ports.map((x: { host_port: number }) => x.host_port)).toEqual([hostPort]);
    expect(await (await fetch(`http://127.0.0.1:${hostPort}/index.html`)).text()).toBe(
      "served-across-pause\n",
    );

    // the detached exec: still running, then exits 0 with every line spooled once, in order
    expect((await execState(execId)).json.state).toBe("running");
    const end = await execState(execId, 120);
    expect(end.json.state).toBe("exited");
    expect(end.json.exit_code).toBe(0);
    const want = `${Array.from({ length: 120 }, (_, i) => `d${i + 1}\n`).join("")}done\n`;
    expect(await execOutput(execId)).toBe(want);
  }, 900_000);

  test("real guest: a resume that falls back to a cold boot ends them, and says so", async () => {
    const d = await run(["workspace", "exec", ws, "--detach", "--json", "--", "sleep", "1000"]);
    expect(d.code).toBe(0);
    const lostId = d.json.exec_id;
    const p = await run(["workspace", "pause", ws, "--json"]);
    expect(p.code).toBe(0);
    // damage the saved memory: the resume must boot from the disk
    const memory = join(home, "workspaces", ws, "paused", "memory");
    const fd = openSync(memory, "r+");
    const at = Math.floor(statSync(memory).size / 2);
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = (b[0] as number) ^ 0xff;
    writeSync(fd, b, 0, 1, at);
    closeSync(fd);
    const r = await run(["workspace", "resume", ws, "--json"]);
    expect(r.code).toBe(0);
    expect(r.json.resumed_from).toBe("cold_boot");

    const st = await serviceStatus("web");
    expect(st.state).toBe("stopped");
    expect(st.end_reason).toContain("ended with the paused machine");
    expect(st.end_reason).toContain("sha256");
    const lost = await execState(lostId);
    expect(lost.json.state).toBe("lost");
    expect(lost.json.end_reason).toContain("ended with the paused machine");
    const shells = await run(["workspace", "shell", "read", ws, sh, "--json"]);
    expect(shells.json.code).toBe("SHELL_NOT_FOUND");
    await expect(fetch(`http://127.0.0.1:${hostPort}/index.html`)).rejects.toThrow();
  }, 900_000);
});
