/**
 * Pause/resume on a real guest (QEMU; TCG here), one workspace through the whole story:
 * a background counter started by exec (in /tmp, a tmpfs: only a memory restore keeps it)
 * keeps counting across pause → resume with the same pid and boot id and a correct clock;
 * while paused no VMM runs, `list` says paused and start is refused with WORKSPACE_NOT_STOPPED; a memory file changed on disk is refused by its hash and the
 * workspace boots cold (counter gone, new boot id); delete of a paused workspace removes its
 * memory file with everything else.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { processesMatching, pyro } from "./helpers.ts";

let home = "";
let ws = "";
const memoryFile = () => join(home, "workspaces", ws, "paused", "memory");

async function sh(script: string) {
  const r = await pyro(["workspace", "exec", ws, "--json", "--", "sh", "-c", script], { home });
  expect(r.json?.exit_code).toBe(0);
  return String(r.json.stdout);
}

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  const c = await pyro(
    ["workspace", "create", "debian:12", "--name", "pause-guest", "--mem-mib", "512", "--json"],
    {
      home,
    },
  );
  expect(c.code).toBe(0);
  expect(c.json.execution_mode).toBe("guest");
  ws = c.json.workspace_id;
}, 1_800_000);

afterAll(async () => {
  if (!ws) return;
  await pyro(["workspace", "delete", ws], { home });
});

guest.describe("real guest: pause and resume", () => {
  let counterPid = "";
  let bootId = "";

  test("real guest: pause saves the machine and ends its VMM; list shows paused; start is refused", async () => {
    await sh(
      "setsid -f sh -c 'echo $$ > /tmp/counter.pid; i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done' </dev/null >/dev/null 2>&1",
    );
    await Bun.sleep(1000);
    const before = (
      await sh("cat /tmp/counter.pid; cat /tmp/counter; cat /proc/sys/kernel/random/boot_id")
    ).split("\n");
    counterPid = before[0] as string;
    expect(Number(before[1])).toBeGreaterThan(0);
    bootId = before[2] as string;
    // the probe for "no VMM" works: while running, the workspace's QEMU is there
    expect(processesMatching(`pyro-${ws}`).length).toBeGreaterThan(0);

    const p = await pyro(["workspace", "pause", ws, "--json"], { home });
    expect(p.code).toBe(0);
    expect(p.json.state).toBe("paused");
    expect(p.json.memory_bytes).toBeGreaterThan(1024 * 1024);
    expect(statSync(memoryFile()).size).toBe(p.json.memory_bytes);
    expect(processesMatching(`pyro-${ws}`)).toEqual([]);
    expect(processesMatching(`__supervise --id ${ws}`)).toEqual([]);

    const list = await pyro(["workspace", "list", "--json"], { home });
    const mine = (list.json.workspaces ?? list.json).find((w: any) => w.workspace_id === ws);
    expect(mine.state).toBe("paused");

    // (an exec here would resume it first: test/auto-pause-guest.test.ts)
    const start = await pyro(["workspace", "start", ws, "--json"], { home });
    expect(start.json.code).toBe("WORKSPACE_NOT_STOPPED");
    // pausing a paused workspace does nothing
    const again = await pyro(["workspace", "pause", ws, "--json"], { home });
    expect(again.json.state).toBe("paused");
  }, 600_000);

  test("real guest: resume continues the background counter (same pid, same boot) with the clock set to now", async () => {
    const r = await pyro(["workspace", "resume", ws, "--json"], { home });
    expect(r.code).toBe(0);
    expect(r.json.resumed_from).toBe("memory");
    expect(r.json.state).toBe("started");
    expect(existsSync(memoryFile())).toBe(false);
    const a = (
      await sh("cat /tmp/counter.pid; cat /tmp/counter; cat /proc/sys/kernel/random/boot_id; date +%s%3N")
    ).split("\n");
    const host = Date.now();
    expect(a[0]).toBe(counterPid);
    expect(a[2]).toBe(bootId);
    expect(Math.abs(Number(a[3]) - host)).toBeLessThan(10_000);
    await Bun.sleep(1500);
    const b = await sh("cat /tmp/counter");
    expect(Number(b)).toBeGreaterThan(Number(a[1]));
  }, 600_000);

  test("real guest: a memory file changed on disk is refused by its hash; resume boots from the disk instead", async () => {
    await sh("echo kept > /workspace/on-disk.txt");
    const p = await pyro(["workspace", "pause", ws, "--json"], { home });
    expect(p.code).toBe(0);
    // flip one byte in the middle of the saved state
    const fd = openSync(memoryFile(), "r+");
    const at = Math.floor(statSync(memoryFile()).size / 2);
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = (b[0] as number) ^ 0xff;
    writeSync(fd, b, 0, 1, at);
    closeSync(fd);
    const r = await pyro(["workspace", "resume", ws, "--json"], { home });
    expect(r.code).toBe(0);
    expect(r.json.resumed_from).toBe("cold_boot");
    expect(r.json.note).toContain("sha256");
    const out = (
      await sh(
        "cat /workspace/on-disk.txt; cat /proc/sys/kernel/random/boot_id; test -e /tmp/counter || echo no-counter",
      )
    ).split("\n");
    expect(out[0]).toBe("kept");
    expect(out[1]).not.toBe(bootId);
    expect(out[2]).toBe("no-counter");
  }, 600_000);

  test("real guest: kill -9 of the supervisor while it saves leaves no state that is used; start boots cold", async () => {
    const rec = () => JSON.parse(readFileSync(join(home, "workspaces", ws, "workspace.json"), "utf8"));
    const supervisor = rec().supervisor_pid as number;
    expect(supervisor).toBeGreaterThan(0);
    const tmpMemory = join(home, "workspaces", ws, "paused.tmp", "memory");
    const pausing = pyro(["workspace", "pause", ws, "--json"], { home });
    // kill it once the memory file is being written
    const deadline = Date.now() + 120_000;
    while (!(existsSync(tmpMemory) && statSync(tmpMemory).size > 0) && Date.now() < deadline)
      await Bun.sleep(5);
    expect(existsSync(tmpMemory)).toBe(true);
    process.kill(supervisor, "SIGKILL");
    const p = await pausing;
    expect(p.code).not.toBe(0);
    const status = await pyro(["workspace", "status", ws, "--json"], { home });
    expect(status.json.state).toBe("stopped");
    expect(existsSync(memoryFile())).toBe(false); // never renamed into place
    const resume = await pyro(["workspace", "resume", ws, "--json"], { home });
    expect(resume.json.code).toBe("WORKSPACE_NOT_STARTED");
    const start = await pyro(["workspace", "start", ws, "--json"], { home });
    expect(start.code).toBe(0);
    expect(existsSync(tmpMemory)).toBe(false); // the leftover is gone once a machine runs
    expect((await sh("cat /workspace/on-disk.txt")).trim()).toBe("kept");
  }, 600_000);

  test("real guest: delete of a paused workspace removes its memory file", async () => {
    const p = await pyro(["workspace", "pause", ws, "--json"], { home });
    expect(p.code).toBe(0);
    expect(existsSync(memoryFile())).toBe(true);
    const d = await pyro(["workspace", "delete", ws, "--json"], { home });
    expect(d.code).toBe(0);
    expect(existsSync(memoryFile())).toBe(false);
    expect(existsSync(join(home, "workspaces", ws))).toBe(false);
    expect(processesMatching(ws)).toEqual([]);
    ws = "";
  }, 600_000);
});
