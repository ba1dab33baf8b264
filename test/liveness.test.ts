/**
 * Liveness at the host boundary: every agent call has a host-side deadline. An agent that
 * is stopped (SIGSTOP) turns an exec into AGENT_UNRESPONSIVE within its timeout plus the
 * grace period, later calls fail fast with the same code, and SIGCONT or stop/start
 * recovers. Host compat first; then real guests: commands run in a pids-limited cgroup, a
 * root fork bomb ends in a timeout and the agent survives it, and a frozen VMM makes the
 * agent unresponsive.
 *
 * An unanswered probe counts against the agent only once its VMM had the CPU to answer
 * (src/supervisor/deadline.ts judgeSilence): a stopped VMM (here the host agent process, or
 * QEMU) is reported only after PROBE_WALL_MAX_MS, which these workspaces shorten with the
 * test-only PYRO_TEST_PROBE_WALL_MAX_MS (the supervisor inherits it from the create).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Pyro, type PyroError } from "../src/sdk/index.ts";
import { guest, guestHome } from "./guest-env.ts";
import { ensureBuilt, freshHome, processesMatching, pyro, waitFor } from "./helpers.ts";

/** The VMM's pid; for the host backend that is the agent process itself. */
function agentPid(home: string, id: string): number {
  const rec = JSON.parse(readFileSync(join(home, "workspaces", id, "workspace.json"), "utf8"));
  return rec.vmm_pid as number;
}

async function status(home: string, id: string) {
  return (await pyro(["workspace", "status", id, "--json"], { home })).json;
}

describe("liveness: a stopped host agent", () => {
  let home: string;
  let id: string;
  beforeAll(async () => {
    await ensureBuilt();
    home = freshHome();
    const r = await pyro(["workspace", "create", "debian:12", "--allow-host-compat", "--json"], {
      home,
      env: { PYRO_TEST_PROBE_WALL_MAX_MS: "3000" },
    });
    expect(r.code).toBe(0);
    id = r.json.workspace_id;
  });
  afterAll(async () => {
    await pyro(["workspace", "delete", id, "--json"], { home });
    expect(processesMatching(join(home, "workspaces"))).toEqual([]);
  });

  test("CLI: exec returns AGENT_UNRESPONSIVE, later calls fail fast, SIGCONT recovers", async () => {
    // The probe works: a live agent answers.
    const ok = await pyro(["workspace", "exec", id, "--timeout-seconds", "2", "--json", "--", "echo", "up"], {
      home,
    });
    expect(ok.code).toBe(0);
    expect(ok.json.stdout).toBe("up\n");
    expect((await status(home, id)).agent_unresponsive_since).toBeNull();

    const pid = agentPid(home, id);
    process.kill(pid, "SIGSTOP");
    try {
      const r = await pyro(["workspace", "exec", id, "--timeout-seconds", "2", "--json", "--", "echo", "x"], {
        home,
      });
      expect(r.code).toBe(70);
      expect(r.json.code).toBe("AGENT_UNRESPONSIVE");
      expect(r.json.message).toContain("2 s timeout");
      // the stopped agent is host compat's VMM: it had no CPU to answer with, and is named so
      expect(r.json.message).toContain("(the VMM process is stopped)");
      expect(r.json.hint).toContain(`pyro workspace stop ${id} && pyro workspace start ${id}`);
      const st = await status(home, id);
      expect(st.state).toBe("started");
      expect(typeof st.agent_unresponsive_since).toBe("string");

      // Marked: the next call does not wait for a deadline, it names the mark.
      const read = await pyro(["workspace", "file", "read", id, "a.txt", "--json"], { home });
      expect(read.code).toBe(70);
      expect(read.json.code).toBe("AGENT_UNRESPONSIVE");
      expect(read.json.message).toContain("has not answered since");
    } finally {
      process.kill(pid, "SIGCONT");
    }
    // The supervisor's pending ping is answered once the agent runs again.
    expect(await waitFor(async () => (await status(home, id)).agent_unresponsive_since === null)).toBe(true);
    const again = await pyro(["workspace", "exec", id, "--json", "--", "echo", "back"], { home });
    expect(again.code).toBe(0);
    expect(again.json.stdout).toBe("back\n");
  }, 60_000);

  test("CLI: a file read against a stopped agent returns; stop/start recovers", async () => {
    await pyro(["workspace", "file", "write", id, "a.txt", "--text", "hello", "--json"], { home });
    const before = await pyro(["workspace", "file", "read", id, "a.txt", "--json"], { home });
    expect(before.json.content).toBe("hello");

    const pid = agentPid(home, id);
    process.kill(pid, "SIGSTOP");
    try {
      const r = await pyro(["workspace", "file", "read", id, "a.txt", "--json"], { home });
      expect(r.code).toBe(70);
      expect(r.json.code).toBe("AGENT_UNRESPONSIVE");
      expect(r.json.message).toContain("did not answer a ping");
      // stop works on a stopped agent (it is woken to act on SIGTERM) and start boots a new one.
      const stop = await pyro(["workspace", "stop", id, "--json"], { home });
      expect(stop.json.state).toBe("stopped");
      expect(await waitFor(() => !alive(pid))).toBe(true);
    } finally {
      if (alive(pid)) process.kill(pid, "SIGCONT");
    }
    // the restarted supervisor keeps the shortened wall cap of the create
    const start = await pyro(["workspace", "start", id, "--json"], {
      home,
      env: { PYRO_TEST_PROBE_WALL_MAX_MS: "3000" },
    });
    expect(start.json.state).toBe("started");
    expect(start.json.agent_unresponsive_since).toBeNull();
    const read = await pyro(["workspace", "file", "read", id, "a.txt", "--json"], { home });
    expect(read.json.content).toBe("hello");
  }, 60_000);

  test("SDK: a warm connection survives an unresponsive agent and works after SIGCONT", async () => {
    const py = new Pyro({ home });
    expect((await py.execWorkspace(id, "echo warm", { timeout_seconds: 2 })).stdout).toBe("warm\n");
    const pid = agentPid(home, id);
    process.kill(pid, "SIGSTOP");
    let err: PyroError | null = null;
    try {
      await py.execWorkspace(id, "echo x", { timeout_seconds: 2 });
    } catch (e) {
      err = e as PyroError;
    } finally {
      process.kill(pid, "SIGCONT");
    }
    expect(err?.code).toBe("AGENT_UNRESPONSIVE");
    expect(err?.hint).toContain("pyro workspace start");
    expect(await waitFor(async () => (await py.workspaceStatus(id)).agent_unresponsive_since === null)).toBe(
      true,
    );
    // Same pooled connection: the abandoned exec stream does not wedge it.
    expect((await py.execWorkspace(id, "echo after", { timeout_seconds: 5 })).stdout).toBe("after\n");
    expect((await py.readWorkspaceFile(id, "a.txt")).content).toBe("hello");
  }, 60_000);
});

/** The shortened wall cap of the real-guest workspace: longer than the VMM stop of the starved-VMM case. */
const STOPPED_VMM_CAP_MS = 30_000;

guest.describe("real guest: liveness", () => {
  let home: string;
  let id: string;
  const exec = async (timeout: number, ...argv: string[]) =>
    pyro(["workspace", "exec", id, "--timeout-seconds", String(timeout), "--json", "--", ...argv], { home });
  /** Processes in the guest, as `ps` counts them (the probe works: a fresh guest has a few dozen). */
  const guestProcesses = async () => {
    const r = await exec(30, "sh", "-c", "ps -e --no-headers | wc -l");
    return r.code === 0 ? Number(r.json.stdout) : Number.POSITIVE_INFINITY;
  };
  beforeAll(async () => {
    home = await guestHome();
    const r = await pyro(["workspace", "create", "debian:12", "--json"], {
      home,
      env: { PYRO_TEST_PROBE_WALL_MAX_MS: String(STOPPED_VMM_CAP_MS) },
    });
    expect(r.code).toBe(0);
    id = r.json.workspace_id;
  }, 1_800_000);
  afterAll(async () => {
    await pyro(["workspace", "delete", id, "--json"], { home });
    expect(processesMatching(join(home, "workspaces", id))).toEqual([]);
  });

  test("real guest: a frozen VMM makes the agent unresponsive; SIGCONT recovers", async () => {
    expect((await exec(5, "echo", "up")).json.stdout).toBe("up\n");
    const vmm = agentPid(home, id);
    process.kill(vmm, "SIGSTOP");
    try {
      const r = await exec(2, "echo", "x");
      expect(r.code).toBe(70);
      expect(r.json.code).toBe("AGENT_UNRESPONSIVE");
      expect(r.json.hint).toContain(`pyro workspace stop ${id}`);
      // not blamed on the agent: the VMM ran no CPU, and the wall cap says so
      expect(r.json.message).toContain("(the VMM process is stopped)");
    } finally {
      process.kill(vmm, "SIGCONT");
    }
    expect(
      await waitFor(async () => (await status(home, id)).agent_unresponsive_since === null, 60_000),
    ).toBe(true);
    expect((await exec(10, "echo", "back")).json.stdout).toBe("back\n");
  }, 120_000);

  test("real guest: an agent stopped inside a running VM is reported unresponsive, named as the agent", async () => {
    // The VMM runs (idle), the agent does not: SIGSTOP from a detached guest process, which
    // also continues it 40 s later (nothing else could: every exec goes through the agent).
    const line =
      'a=$(pidof pyro-agent); echo "$a"; setsid sh -c "sleep 2; kill -STOP $a; sleep 40; kill -CONT $a" >/dev/null 2>&1 &';
    const started = await exec(10, "sh", "-c", line);
    expect(started.code).toBe(0);
    expect(String(started.json.stdout).trim()).toMatch(/^\d+( \d+)*$/);
    await Bun.sleep(3_000);
    const r = await pyro(["workspace", "file", "read", id, "nothing.txt", "--json"], { home });
    expect(r.code).toBe(70);
    expect(r.json.code).toBe("AGENT_UNRESPONSIVE");
    expect(r.json.message).toContain("did not answer a ping though its VM ran for");
    expect(typeof (await status(home, id)).agent_unresponsive_since).toBe("string");
    // the agent continues by itself and answers the supervisor's pending ping
    expect(
      await waitFor(async () => (await status(home, id)).agent_unresponsive_since === null, 90_000),
    ).toBe(true);
    expect((await exec(10, "echo", "back")).json.stdout).toBe("back\n");
  }, 180_000);

  test("real guest: a VMM stopped past the probe deadlines during a call is slow, not dead", async () => {
    await pyro(["workspace", "file", "write", id, "starved.txt", "--text", "still here", "--json"], { home });
    const vmm = agentPid(home, id);
    process.kill(vmm, "SIGSTOP");
    let stopped = true;
    try {
      const t0 = Date.now();
      const call = pyro(["workspace", "file", "read", id, "starved.txt", "--json"], { home });
      // longer than IDLE_PROBE_MS + PROBE_ANSWER_MS (15 s): the old rule's verdict
      await Bun.sleep(20_000);
      process.kill(vmm, "SIGCONT");
      stopped = false;
      const r = await call;
      expect(r.code).toBe(0);
      expect(r.json.content).toBe("still here");
      // the read was held by the stop, past the old verdict (not a timing claim: SIGCONT came at 20 s)
      expect(Date.now() - t0).toBeGreaterThan(20_000);
    } finally {
      if (stopped) process.kill(vmm, "SIGCONT");
    }
    expect((await status(home, id)).agent_unresponsive_since).toBeNull();
  }, 120_000);

  test("real guest: commands run in the pids-limited commands cgroup, the agent outside it", async () => {
    const r = await exec(
      30,
      "sh",
      "-c",
      "cat /proc/self/cgroup /sys/fs/cgroup/commands/pids.max /proc/sys/kernel/threads-max; grep -c . /sys/fs/cgroup/cgroup.procs",
    );
    const [cg, max, threads, rootProcs] = String(r.json.stdout).trim().split("\n");
    expect(cg).toBe("0::/commands");
    // bounded by the kernel at half the guest's task limit, so the agent can always make threads
    expect(Number(max)).toBe(Math.floor(Math.min(Number(threads), 32768) * 0.5));
    // the agent (and init) stay in the root cgroup
    expect(Number(rootProcs)).toBeGreaterThan(0);
  }, 60_000);

  test("real guest: a root fork bomb ends in a timeout and the next exec works", async () => {
    const before = await guestProcesses();
    expect(before).toBeLessThan(100);
    // The bomb's main process stays in the foreground (sleep), so the command ends only by its timeout.
    const r = await exec(30, "bash", "-c", "b(){ b|b& }; b; sleep 600");
    expect(r.json.exit_code).toBe(124);
    expect(r.json.timed_out).toBe(true);
    // The kernel bounds it at the commands cgroup's pids.max; the task guard may freeze it
    // first (stderr says so), depending on how fast it grew.
    const next = await exec(30, "sh", "-c", "echo next; id -u");
    expect(next.json.stdout).toBe("next\n0\n");
    expect(await guestProcesses()).toBeLessThan(100);
  }, 300_000);

  test("real guest: a detached root fork bomb is killed and the agent keeps serving", async () => {
    // The main process returns at once; the bomb goes on in the background.
    const r = await exec(30, "bash", "-c", "b(){ b|b& }; b");
    expect(r.code).toBe(0);
    expect(await waitFor(async () => (await guestProcesses()) < 100, 180_000)).toBe(true);
    const logs = await pyro(["workspace", "logs", id, "--json"], { home });
    expect(logs.json.console_tail).toContain("task guard: SIGKILL to process group");
    expect((await exec(30, "echo", "alive")).json.stdout).toBe("alive\n");
  }, 300_000);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
