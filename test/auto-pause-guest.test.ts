/**
 * auto_pause_after_seconds on a real guest (QEMU; TCG here), one workspace through the story:
 * a running detached exec keeps an idle workspace up (it would die with the pause); once it is
 * killed and the workspace stays idle, the supervisor pauses it by itself (status: paused,
 * paused_by idle, no VMM); the next exec resumes it transparently and a background counter
 * started before keeps its pid, boot and count; status then says who resumed it. Turning the
 * setting off with `workspace update` keeps it up. Refusals without a VM: auto-pause.test.ts.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { processesMatching, pyro } from "./helpers.ts";

let home = "";
let ws = "";
const IDLE_S = 10;

async function status() {
  const s = await pyro(["workspace", "status", ws, "--json"], { home });
  expect(s.code).toBe(0);
  return s.json;
}

/** Poll status (which is not activity) until `state`, or give up after `ms`; returns the last status. */
async function waitState(state: string, ms: number) {
  const deadline = Date.now() + ms;
  let s = await status();
  while (s.state !== state && Date.now() < deadline) {
    await Bun.sleep(1000);
    s = await status();
  }
  return s;
}

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  const c = await pyro(
    [
      "workspace",
      "create",
      "debian:12",
      "--name",
      "auto-pause-guest",
      "--mem-mib",
      "512",
      "--auto-pause-after-seconds",
      String(IDLE_S),
      "--json",
    ],
    { home },
  );
  expect(c.code).toBe(0);
  expect(c.json.execution_mode).toBe("guest");
  expect(c.json.auto_pause_after_seconds).toBe(IDLE_S);
  ws = c.json.workspace_id;
}, 1_800_000);

afterAll(async () => {
  if (!ws) return;
  await pyro(["workspace", "delete", ws], { home });
  expect(processesMatching(ws)).toEqual([]);
});

guest.describe("real guest: auto-pause", () => {
  test("real guest: idle → paused by itself (not while a detached exec runs); exec resumes it and a background counter kept its state", async () => {
    const sh = async (script: string) => {
      const r = await pyro(["workspace", "exec", ws, "--json", "--", "sh", "-c", script], { home });
      expect(r.code).toBe(0);
      return { out: String(r.json.stdout).split("\n"), stderr: r.stderr };
    };
    await sh(
      "setsid -f sh -c 'echo $$ > /tmp/counter.pid; i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done' </dev/null >/dev/null 2>&1",
    );
    const d = await pyro(["workspace", "exec", ws, "--detach", "--json", "--", "sleep", "1000"], { home });
    expect(d.code).toBe(0);
    expect(d.json.state).toBe("running");
    const before = (await sh("cat /tmp/counter.pid /tmp/counter /proc/sys/kernel/random/boot_id")).out;
    expect(Number(before[1])).toBeGreaterThan(0);

    // A running detached exec keeps it up well past the idle time (status is not activity).
    const held = await waitState("paused", (IDLE_S + 15) * 1000);
    expect(held.state).toBe("started");
    expect(processesMatching(`pyro-${ws}`).length).toBeGreaterThan(0);

    // Once it ends and nothing else happens, the supervisor pauses the workspace by itself.
    const k = await pyro(["workspace", "exec-kill", ws, d.json.exec_id, "--json"], { home });
    expect(k.code).toBe(0);
    const paused = await waitState("paused", 300_000);
    expect(paused.state).toBe("paused");
    expect(paused.paused_by).toBe("idle");
    expect(existsSync(join(home, "workspaces", ws, "paused", "memory"))).toBe(true);
    expect(processesMatching(`pyro-${ws}`)).toEqual([]);
    expect(processesMatching(`__supervise --id ${ws}`)).toEqual([]);
    const list = await pyro(["workspace", "list", "--json"], { home });
    expect(list.json.workspaces.find((w: any) => w.workspace_id === ws).state).toBe("paused");

    // The next exec resumes it first: same processes, same boot; the counter went on from where it was.
    const after = await sh("cat /tmp/counter.pid /tmp/counter /proc/sys/kernel/random/boot_id");
    expect(after.stderr).toContain("resuming");
    expect(after.out[0]).toBe(before[0]);
    expect(after.out[2]).toBe(before[2]);
    expect(Number(after.out[1])).toBeGreaterThanOrEqual(Number(before[1]));
    const resumed = await status();
    expect(resumed.state).toBe("started");
    expect(resumed.resumed_by).toBe("workspace_exec");
    expect(resumed.resumed_at).toBeTruthy();
    expect(resumed.paused_by).toBe("idle");
    expect(existsSync(join(home, "workspaces", ws, "paused"))).toBe(false);
    await Bun.sleep(1500);
    const later = await sh("cat /tmp/counter");
    expect(Number(later.out[0])).toBeGreaterThan(Number(after.out[1]));
  }, 900_000);

  test("real guest: auto-pause turned off with workspace update keeps an idle workspace running", async () => {
    const s0 = await status();
    if (s0.state !== "started") {
      const r = await pyro(["workspace", "resume", ws, "--json"], { home });
      expect(r.code).toBe(0);
    }
    const u = await pyro(["workspace", "update", ws, "--auto-pause-after-seconds", "0", "--json"], { home });
    expect(u.code).toBe(0);
    expect(u.json.auto_pause_after_seconds).toBeNull();
    const s = await waitState("paused", (IDLE_S + 15) * 1000);
    expect(s.state).toBe("started");
  }, 600_000);
});
