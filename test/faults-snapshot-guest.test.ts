/**
 * The crash matrix on real guests at `snapshot create` and `reset` (issue 15, part 1;
 * docs/reliability.md "Crash matrix"): the supervisor and the VMM (QEMU) are SIGKILLed at the
 * named steps of both operations, against one real guest workspace shared by the cases (a TCG
 * boot costs seconds). Steps inside the CLI are reached with PYRO_FAULT_PROC=hold (the CLI
 * stops itself at the step, the test kills the supervisor or QEMU, then lets the CLI go on);
 * steps inside the reset's new supervisor (its boot) are armed through the reset's
 * environment, which the supervisor inherits.
 *
 * Each case checks, once things settle (test/faults-cases.ts): no process, socket, tap,
 * directory or orphan disk (`disk.ext4.new-*`, `*.tmp-*`) that `list` does not account for;
 * `list` and `status` agree (a stopped workspace says why); /workspace holds the old or the
 * new state of two files, never a mix; the next command repairs (`start`), and a snapshot
 * that is listed restores.
 */
import { beforeAll, expect } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expectSettled, processesOf } from "./faults-cases.ts";
import { guest, guestHome } from "./guest-env.ts";
import { PYRO, pyro, waitFor } from "./helpers.ts";

type Killed = "supervisor" | "vmm";
interface Case {
  op: "snapshot" | "reset";
  step: string;
  killed: Killed;
  /** hold: the CLI holds at the step and the test kills; armed: the process kills itself there */
  how: "hold" | "armed";
}

const ALL: Case[] = [
  { op: "snapshot", step: "snapshot.frozen", killed: "supervisor", how: "hold" },
  { op: "snapshot", step: "snapshot.frozen", killed: "vmm", how: "hold" },
  { op: "snapshot", step: "snapshot.copied", killed: "vmm", how: "hold" },
  { op: "snapshot", step: "snapshot.published", killed: "supervisor", how: "hold" },
  { op: "reset", step: "reset.verified", killed: "supervisor", how: "hold" },
  { op: "reset", step: "reset.verified", killed: "vmm", how: "hold" },
  { op: "reset", step: "boot.vmm-spawned", killed: "vmm", how: "armed" },
  { op: "reset", step: "boot.agent-hello", killed: "supervisor", how: "armed" },
];

/** PYRO_FAULT_ONLY=<text> keeps the cases whose "op/step/killed" contains it (local runs). */
const CASES: Case[] = ALL.filter((c) =>
  `${c.op}/${c.step}/${c.killed}`.includes(process.env.PYRO_FAULT_ONLY ?? ""),
);
const ENV = { PYRO_TEMPLATES: "off" };
const OLD = "old\nold\n";
const NEW = "new\nnew\n";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

guest.describe("real guest: crash matrix at snapshot create and reset", () => {
  let home: string;
  let id: string;
  const lines: string[] = [];
  beforeAll(async () => {
    home = await guestHome();
  }, 900_000);

  const run = (args: string[], env: Record<string, string> = {}) =>
    pyro(args, { home, env: { ...ENV, ...env } });
  const record = () => JSON.parse(readFileSync(join(home, "workspaces", id, "workspace.json"), "utf8"));
  const content = async () =>
    (await run(["workspace", "exec", id, "--json", "--", "sh", "-c", "cat a.txt b.txt"])).json?.stdout;

  /** Run a case's command with the fault; returns its exit code and JSON. */
  async function faulted(c: Case, n: number): Promise<{ code: number; json: any }> {
    const mark = join(home, `mark-${c.op}-${n}`);
    const args =
      c.op === "snapshot"
        ? ["workspace", "snapshot", "create", id, `s${n}`, "--json"]
        : ["workspace", "reset", id, "--json"];
    if (c.how === "armed") {
      const r = await run(args, { PYRO_FAULT: c.step, PYRO_FAULT_PROC: c.killed, PYRO_FAULT_MARK: mark });
      expect(readFileSync(mark, "utf8")).toContain(`${c.step} ${c.killed}`);
      return r;
    }
    const p = Bun.spawn([PYRO, ...args], {
      env: {
        ...(process.env as Record<string, string>),
        ...ENV,
        PYRO_HOME: home,
        PYRO_FAULT: c.step,
        PYRO_FAULT_PROC: "hold",
        PYRO_FAULT_MARK: mark,
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = new Response(p.stdout).text();
    const err = new Response(p.stderr).text();
    try {
      // the probe: the CLI reached the step and holds there
      const reached = await waitFor(
        () => existsSync(mark) && readFileSync(mark, "utf8").includes("hold"),
        120_000,
      );
      if (!reached) throw new Error(`${c.step} not reached: ${await Promise.race([out, Bun.sleep(100)])}`);
      const r = record();
      const pid = c.killed === "supervisor" ? r.supervisor_pid : r.vmm_pid;
      expect(typeof pid).toBe("number");
      expect(alive(pid)).toBe(true);
      process.kill(pid, "SIGKILL");
      expect(await waitFor(() => !alive(pid), 10_000)).toBe(true);
    } finally {
      try {
        process.kill(p.pid, "SIGCONT");
      } catch {}
    }
    const code = await p.exited;
    const text = await out;
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {}
    if (json === null)
      throw new Error(`${c.step}: no JSON from the command (exit ${code}): ${text}${await err}`);
    return { code, json };
  }

  guest.test(
    "real guest: supervisor and VMM killed at each step of snapshot create and reset: no leak, truthful status, old or new content, the next command repairs",
    async () => {
      const t0 = Date.now();
      const seed = join(home, "seed-ab");
      Bun.spawnSync(["mkdir", "-p", seed]);
      await Bun.write(join(seed, "a.txt"), "old\n");
      await Bun.write(join(seed, "b.txt"), "old\n");
      const made = await run(["workspace", "create", "debian:12", "--seed-path", seed, "--json"]);
      expect(made.code).toBe(0);
      id = made.json.workspace_id;
      let n = 0;
      try {
        for (const c of CASES) {
          n += 1;
          const tc = Date.now();
          const name = `${c.op}/${c.step}/${c.killed}`;
          // the state before: started, both files "new" (the baseline holds "old")
          if ((await run(["workspace", "status", id, "--json"])).json.state !== "started")
            expect((await run(["workspace", "start", id, "--json"])).json?.state).toBe("started");
          const put = await run([
            "workspace",
            "exec",
            id,
            "--json",
            "--",
            "sh",
            "-c",
            "echo new > a.txt; echo new > b.txt; sync",
          ]);
          expect(put.json?.exit_code).toBe(0);

          const res = await faulted(c, n);
          if (res.code !== 0) {
            expect(typeof res.json.code).toBe("string"); // an error object, not a crash
            if (res.json.code === "INTERNAL")
              throw new Error(`${name}: INTERNAL: ${JSON.stringify(res.json)}`);
          }

          // settled: nothing leaked, list and status agree
          const listed = await expectSettled(home, ENV, 30_000);
          expect(listed.map((w) => w.workspace_id)).toEqual([id]);
          const st = (await run(["workspace", "status", id, "--json"])).json;
          if (st.state !== "started") {
            expect(st.stop_reason).toBeTruthy();
            // the reason is this failure's, not the reset's own stop of the old machine
            if (c.op === "reset") expect(st.stop_reason).not.toBe("stopped by request");
          }
          // (expectSettled also found no orphan disk, `*.tmp-*`, socket, tap or QEMU unaccounted for)
          if (st.state !== "started")
            expect(processesOf(home).filter((p) => p.text.includes("qemu-system"))).toEqual([]);

          // the next command repairs; the content is old or new, never a mix
          if (st.state !== "started")
            expect((await run(["workspace", "start", id, "--json"])).json?.state).toBe("started");
          const got = await content();
          expect([OLD, NEW]).toContain(got);
          if (c.op === "reset" && res.code === 0) expect(got).toBe(OLD);
          if (c.op === "snapshot") expect(got).toBe(NEW); // synced before the snapshot began

          let restored = "";
          if (c.op === "snapshot") {
            const snaps = await run(["workspace", "snapshot", "list", id, "--json"]);
            expect(snaps.code).toBe(0);
            const listedSnap = JSON.stringify(snaps.json).includes(`"s${n}"`);
            if (res.code === 0) expect(listedSnap).toBe(true);
            if (listedSnap) {
              // a listed snapshot is whole: it restores to the state it was taken from
              const back = await run(["workspace", "reset", id, "--snapshot", `s${n}`, "--json"]);
              expect(back.code).toBe(0);
              expect(await content()).toBe(NEW);
              restored = ", listed snapshot restores";
            }
          }
          lines.push(
            `${name}: command exit ${res.code}${res.json?.code ? ` ${res.json.code}` : ""}, after: ${st.state}${st.stop_reason ? ` (${st.stop_reason})` : ""}, content ${got === OLD ? "old" : "new"}${restored}, leaks 0, ${Math.round((Date.now() - tc) / 1000)} s`,
          );
        }
      } finally {
        await run(["workspace", "delete", id, "--json"]);
        const steps = new Set(CASES.map((c) => `${c.op}:${c.step}`));
        console.log(
          `crash matrix (real guest, snapshot create + reset): ${steps.size} steps x killed process = ${CASES.length} cases, ${lines.length} passed, ${lines.length === CASES.length ? "leaks found 0" : `failed at case ${lines.length + 1}`}, ${Math.round((Date.now() - t0) / 1000)} s\n  ${lines.join("\n  ")}`,
        );
      }
      expect(existsSync(join(home, "workspaces", id))).toBe(false);
      expect(processesOf(home)).toEqual([]);
    },
    900_000,
  );
});
