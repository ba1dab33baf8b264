/**
 * The vanished workspace (docs/reliability.md, crash matrix, "the flaky case"): a `workspace
 * create` answered `started`, and a moment later its directory was gone. The cause: the
 * creator checks read the record, then looked at the creating process. A supervisor's
 * creator poll (every 250 ms) that read the record just before the CLI cleared `in_progress`
 * and exited found the CLI dead and discarded a finished create; `repairRecord` judging a
 * record read earlier (a scan in `list` or create's active count) could do the same. Now the
 * process is judged first and the record read again after (store.ts `confirmed`).
 *
 * Host compat. The interleaving is forced, not hoped for: PYRO_FAULT=create.done,creator.poll
 * with PYRO_FAULT_PROC=hold stops the CLI right before it clears `in_progress` and the
 * supervisor right after its poll read the record (src/base/fault.ts); the test lets the CLI
 * finish and exit, then the supervisor go on with what it read.
 */
import { beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isWorkspaceId } from "../src/manager/ids.ts";
import { readRecord } from "../src/manager/record.ts";
import { repairRecord, updateRecord } from "../src/manager/store.ts";
import { processesOf } from "./faults-cases.ts";
import { ensureBuilt, freshHome, PYRO, pyro, waitFor } from "./helpers.ts";

beforeAll(async () => {
  await ensureBuilt();
}, 300_000);

const HC = { PYRO_BACKEND: "host" };

/** Is the process stopped (SIGSTOP: state T)? */
function stopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
  } catch {
    return false;
  }
}

/** Let a held process go on (once it has really stopped: the mark is written just before). */
async function release(pid: number): Promise<void> {
  expect(await waitFor(() => stopped(pid), 30_000)).toBe(true);
  process.kill(pid, "SIGCONT");
}

/**
 * Start a create with both holds armed; return once the CLI is held before clearing
 * `in_progress` and the supervisor is held in a poll that read the record after that (earlier
 * supervisor holds, during the boot, are let go).
 */
async function heldCreate(home: string) {
  const mark = join(home, "mark");
  const p = Bun.spawn(
    [PYRO, "workspace", "create", "debian:12", "--allow-host-compat", "--name", "w", "--json"],
    {
      env: {
        ...(process.env as Record<string, string>),
        ...HC,
        PYRO_HOME: home,
        PYRO_FAULT: "create.done,creator.poll",
        PYRO_FAULT_PROC: "hold",
        PYRO_FAULT_MARK: mark,
      },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  let seen = 0;
  let cliHeld = false;
  let supervisor = 0;
  const deadline = Date.now() + 120_000;
  while (!supervisor) {
    if (Date.now() > deadline)
      throw new Error(`no hold pair: ${existsSync(mark) ? readFileSync(mark, "utf8") : ""}`);
    const lines = existsSync(mark) ? readFileSync(mark, "utf8").split("\n").filter(Boolean) : [];
    for (; seen < lines.length && !supervisor; seen++) {
      const [step, , role, pid] = (lines[seen] as string).split(" ");
      if (step === "create.done" && role === "cli") {
        expect(Number(pid)).toBe(p.pid);
        cliHeld = true;
      } else if (step === "creator.poll" && role === "supervisor") {
        if (cliHeld) supervisor = Number(pid);
        else await release(Number(pid)); // a poll during the boot: the create cannot finish yet
      }
    }
    await Bun.sleep(20);
  }
  expect(await waitFor(() => stopped(p.pid) && stopped(supervisor), 30_000)).toBe(true);
  return { p, supervisor };
}

test("a create that finishes while its supervisor's creator poll is under way is kept", async () => {
  const home = freshHome();
  const { p, supervisor } = await heldCreate(home);
  try {
    // the create finishes: in_progress cleared, `started` answered, the CLI exits
    await release(p.pid);
    const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    expect(code).toBe(0);
    const made = JSON.parse(out);
    expect(made.state).toBe("started");
    expect(readRecord(home, made.workspace_id)?.in_progress ?? null).toBeNull();
    // the supervisor goes on with the record it read before that (in_progress set, the CLI now gone)
    await release(supervisor);
    expect(await waitFor(() => !stopped(supervisor), 10_000)).toBe(true);
    await Bun.sleep(1500); // several polls: a discard would have happened by now
    expect(existsSync(join(home, "workspaces", made.workspace_id))).toBe(true);
    const log = readFileSync(join(home, "workspaces", made.workspace_id, "logs", "supervisor.log"), "utf8");
    expect(log).not.toContain("discarding");
    const ex = await pyro(["workspace", "exec", "w", "--json", "--", "echo", "hi"], { home, env: HC });
    expect(ex.json?.stdout).toBe("hi\n");
    expect((await pyro(["workspace", "delete", "w", "--json"], { home, env: HC })).json?.deleted).toBe(true);
  } finally {
    for (const pid of [p.pid, supervisor]) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {}
    }
  }
  expect(await waitFor(() => processesOf(home).length === 0, 10_000)).toBe(true);
}, 300_000);

test("the probe: a creator killed at the same point still has its workspace discarded by the supervisor", async () => {
  const home = freshHome();
  const { p, supervisor } = await heldCreate(home);
  const listing = () => readdirSync(join(home, "workspaces")).filter(isWorkspaceId);
  expect(listing().length).toBe(1);
  // the create dies before clearing in_progress: abandoned, and the supervisor must see it
  process.kill(p.pid, "SIGKILL");
  expect(await p.exited).not.toBe(0);
  await release(supervisor);
  expect(await waitFor(() => listing().length === 0, 30_000)).toBe(true);
  expect(await waitFor(() => processesOf(home).length === 0, 10_000)).toBe(true);
}, 300_000);

test("repairRecord given a record read before its create finished keeps the workspace", async () => {
  const home = freshHome();
  const made = await pyro(["workspace", "create", "debian:12", "--allow-host-compat", "--json"], {
    home,
    env: HC,
  });
  expect(made.code).toBe(0);
  const id = made.json.workspace_id as string;
  const done = readRecord(home, id);
  if (!done) throw new Error("no record");
  // what a scan read while the create was under way: in_progress naming a process now gone
  const dead = Bun.spawn(["true"]);
  await dead.exited;
  const stale = { ...done, in_progress: { op: "create" as const, pid: dead.pid, pid_start: "1" } };
  expect((await repairRecord(home, stale))?.workspace_id).toBe(id);
  expect(existsSync(join(home, "workspaces", id))).toBe(true);
  expect((await pyro(["workspace", "exec", id, "--json", "--", "true"], { home, env: HC })).code).toBe(0);
  // the probe: the same record really on disk is an abandoned create, and is discarded
  await updateRecord(home, id, (x) => ({ ...x, in_progress: stale.in_progress }));
  expect(await repairRecord(home, stale)).toBeNull();
  expect(existsSync(join(home, "workspaces", id))).toBe(false);
  expect(await waitFor(() => processesOf(home).length === 0, 10_000)).toBe(true);
}, 120_000);
