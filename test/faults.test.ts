/**
 * The crash matrix (issue 15, part 1; docs/reliability.md "Crash matrix"). Each case runs one
 * pyro command with a test-only crash point armed (src/base/fault.ts: PYRO_FAULT=<step>,
 * PYRO_FAULT_PROC=cli|supervisor|vmm) so the CLI, the supervisor or the VMM is SIGKILLed at
 * that step, then checks, after things settle:
 * - the step was reached (PYRO_FAULT_MARK records it: a case that never fired fails);
 * - nothing leaked: every process of the home (by argv or environment) belongs to a workspace
 *   `list` shows as started, a stopped one has no process and no socket, and workspaces/
 *   holds exactly the listed workspaces (no orphan directory, staging or trash);
 * - `list` and `status` agree and tell the truth: a create exists exactly when the command
 *   said it succeeded;
 * - the next commands repair: a stopped workspace starts, /workspace/a.txt holds the old or
 *   the new content (never anything else), delete leaves nothing, and the name is free again.
 *
 * The full matrix runs in host compat (the lifecycle code is the same for every backend;
 * there the "VMM" is the host agent process). Real guests run a representative subset where
 * the VMM matters: a killed create leaves no QEMU running (the supervisor notices by itself),
 * the VMM killed mid-exec, and the supervisor killed while stopping (its QEMU goes with it).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expectSettled, type Listed, processesOf, violation } from "./faults-cases.ts";
import { guest, guestHome } from "./guest-env.ts";
import { ensureBuilt, freshHome, type PyroResult, pyro, waitFor } from "./helpers.ts";

type Proc = "cli" | "supervisor" | "vmm";
type Op = "create" | "start" | "exec" | "stop" | "delete" | "export" | "snapshot" | "reset";
interface Case {
  op: Op;
  step: string;
  proc: Proc;
}

/** Each operation's named steps and the processes killed at each (see src/base/fault.ts callers). */
const MATRIX: Record<Op, Array<[string, Proc[]]>> = {
  create: [
    ["create.record", ["cli"]],
    ["create.disk", ["cli"]],
    ["boot.vmm-spawned", ["supervisor", "vmm"]],
    ["boot.agent-hello", ["supervisor", "vmm"]],
    ["create.seed", ["cli", "vmm"]],
    ["create.done", ["cli", "vmm"]],
  ],
  start: [
    ["start.record", ["cli"]],
    ["boot.vmm-spawned", ["supervisor", "vmm"]],
    ["boot.agent-hello", ["supervisor", "vmm"]],
    ["start.done", ["cli", "vmm"]],
  ],
  exec: [["exec.output", ["cli", "supervisor", "vmm"]]],
  stop: [
    ["stop.requested", ["cli", "vmm"]],
    ["supervisor.ending", ["supervisor", "vmm"]],
  ],
  delete: [
    ["delete.stopped", ["cli"]],
    ["supervisor.ending", ["supervisor", "vmm"]],
  ],
  export: [["export.output", ["cli"]]],
  // snapshot create and reset (src/manager/disk-image.ts FAULT_STEPS; host compat reaches these)
  snapshot: [["snapshot.published", ["cli"]]],
  reset: [
    ["reset.copied", ["cli"]],
    ["reset.verified", ["cli"]],
    ["reset.stopped", ["cli"]],
    ["reset.swapped", ["cli"]],
    ["reset.recorded", ["cli"]],
  ],
};

/** Every case; PYRO_FAULT_ONLY=<text> keeps those whose "op/step/proc" contains it (local runs). */
const CASES: Case[] = Object.entries(MATRIX)
  .flatMap(([op, steps]) =>
    steps.flatMap(([step, procs]) => procs.map((proc) => ({ op: op as Op, step, proc }))),
  )
  .filter((c) => `${c.op}/${c.step}/${c.proc}`.includes(process.env.PYRO_FAULT_ONLY ?? ""));

/** A command that must succeed; its whole output in the error when it did not. */
function succeeded(r: PyroResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stdout}${r.stderr}`);
}

/** The next commands repair: start what is stopped, read a.txt (old or new), delete; the name is free. */
async function expectRepairs(home: string, env: Record<string, string>, listed: Listed[]): Promise<void> {
  for (const w of listed) {
    if (w.state !== "started") {
      const s = await pyro(["workspace", "start", w.workspace_id, "--json"], { home, env });
      expect(s.json?.state ?? s.stdout).toBe("started");
    }
    const cat = await pyro(["workspace", "exec", w.workspace_id, "--json", "--", "cat", "a.txt"], {
      home,
      env,
    });
    expect(["old\n", "new\n"]).toContain(cat.json?.stdout);
    succeeded(await pyro(["workspace", "delete", w.workspace_id, "--json"], { home, env }), "delete");
  }
  const again = await pyro(
    ["workspace", "create", "debian:12", "--allow-host-compat", "--name", "w", "--json"],
    { home, env },
  );
  succeeded(again, "create w again");
  const del = await pyro(["workspace", "delete", "w", "--json"], { home, env });
  if (!del.stdout.includes('"deleted": true')) {
    const dir = join(home, "workspaces");
    const list = await pyro(["workspace", "list", "--json"], { home, env });
    throw new Error(
      `delete w after create w (${again.stdout.slice(0, 300)}): ${del.stdout}; workspaces/ holds ${JSON.stringify(existsSync(dir) ? readdirSync(dir) : null)}; list: ${list.stdout.slice(0, 500)}`,
    );
  }
  expect(await violation(home, env)).toBeNull();
  expect(readdirSync(join(home, "workspaces"))).toEqual([]);
}

/** A seed directory with a.txt = "old". */
function seedDir(): string {
  const d = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "seed-"));
  writeFileSync(join(d, "a.txt"), "old\n");
  return d;
}

const OUT_DIR = "out";

/** The command of a case's operation (workspace named `w`, seeded unless it is the create). */
function command(op: Op, seed: string, home: string): string[] {
  switch (op) {
    case "create":
      return [
        "workspace",
        "create",
        "debian:12",
        "--allow-host-compat",
        "--seed-path",
        seed,
        "--name",
        "w",
        "--json",
      ];
    case "start":
      return ["workspace", "start", "w", "--json"];
    case "exec":
      return [
        "workspace",
        "exec",
        "w",
        "--json",
        "--",
        "sh",
        "-c",
        "echo new > a.txt; echo out; sleep 0.3; echo done",
      ];
    case "stop":
      return ["workspace", "stop", "w", "--json"];
    case "delete":
      return ["workspace", "delete", "w", "--json"];
    case "export":
      return ["workspace", "export", "w", "a.txt", "--output", join(home, OUT_DIR, "a.txt"), "--json"];
    case "snapshot":
      return ["workspace", "snapshot", "create", "w", "s", "--json"];
    case "reset":
      return ["workspace", "reset", "w", "--json"];
  }
}

/** Run one case in its own home: setup, the faulted command, settle, truth, repair. Returns a summary line. */
async function runCase(c: Case, env: Record<string, string>, home = freshHome()): Promise<string> {
  const seed = seedDir();
  mkdirSync(join(home, OUT_DIR), { recursive: true });
  const markFile = join(home, "fault-mark");
  const faulty = { ...env, PYRO_FAULT: c.step, PYRO_FAULT_PROC: c.proc, PYRO_FAULT_MARK: markFile };
  if (c.op !== "create") {
    // A supervisor reads PYRO_FAULT once, from the command that started it: when the step is
    // the supervisor's (not reached while creating), it is armed at create.
    const made = await pyro(
      [
        "workspace",
        "create",
        "debian:12",
        "--allow-host-compat",
        "--seed-path",
        seed,
        "--name",
        "w",
        "--json",
      ],
      { home, env: c.proc === "cli" || c.op === "start" ? env : faulty },
    );
    expect(made.code).toBe(0);
    if (c.op === "start") await pyro(["workspace", "stop", "w", "--json"], { home, env });
    // reset goes back to the baseline (a.txt "old") from "new"
    if (c.op === "reset" || c.op === "snapshot")
      expect(
        (
          await pyro(["workspace", "exec", "w", "--json", "--", "sh", "-c", "echo new > a.txt"], {
            home,
            env,
          })
        ).code,
      ).toBe(0);
  }
  const res: PyroResult = await pyro(command(c.op, seed, home), { home, env: faulty });
  // the probe: the crash point was reached in the intended process
  const marks = existsSync(markFile) ? readFileSync(markFile, "utf8") : "";
  if (!marks.includes(`${c.step} ${c.proc}`))
    throw new Error(
      `${c.op}/${c.step}/${c.proc}: the step was not reached (marks ${JSON.stringify(marks)}); the command exited ${res.code}: ${res.stdout}${res.stderr}`,
    );
  if (c.proc === "cli") expect(res.code).not.toBe(0);

  const listed = await expectSettled(home, env);
  const names = listed.map((w) => w.name);
  // truth: a create exists exactly when it said it succeeded; a delete that said so left nothing
  if (c.op === "create") expect(names).toEqual(res.code === 0 ? ["w"] : []);
  else if (c.op === "delete" && res.code === 0) expect(names).toEqual([]);
  else if (c.op !== "delete") expect(names).toEqual(["w"]);
  if (c.op === "export") {
    const out = join(home, OUT_DIR);
    const left = readdirSync(out);
    // the output is whole or absent; a killed export's staging is swept by the next export there
    if (left.includes("a.txt")) expect(readFileSync(join(out, "a.txt"), "utf8")).toBe("old\n");
    const again = await pyro(
      ["workspace", "export", "w", "a.txt", "--output", join(out, "b.txt"), "--json"],
      {
        home,
        env,
      },
    );
    expect(again.code).toBe(0);
    expect(readdirSync(out).filter((n) => n.startsWith(".pyro-export-"))).toEqual([]);
  }
  if (c.op === "snapshot") {
    // the snapshot is listed whole or not at all; one that is listed restores
    const snaps = await pyro(["workspace", "snapshot", "list", "w", "--json"], { home, env });
    expect(snaps.code).toBe(0);
    if (JSON.stringify(snaps.json).includes('"s"'))
      expect((await pyro(["workspace", "reset", "w", "--snapshot", "s", "--json"], { home, env })).code).toBe(
        0,
      );
  }
  await expectRepairs(home, env, listed);
  return `${c.op} ${c.step} ${c.proc}: command exit ${res.code}${res.json?.code ? ` ${res.json.code}` : ""}, after: ${
    listed.map((w) => w.state).join(",") || "none"
  }`;
}

const HC = { PYRO_BACKEND: "host" };

beforeAll(async () => {
  await ensureBuilt();
}, 300_000);

describe("crash matrix (host compat)", () => {
  const lines: string[] = [];
  afterAll(() => {
    const procs = new Set(CASES.map((c) => `${c.step}/${c.proc}`));
    const steps = new Set(CASES.map((c) => `${c.op}:${c.step}`));
    console.log(
      `crash matrix (host compat): ${steps.size} steps x killed process = ${procs.size} step/process pairs, ${CASES.length} cases, ${lines.length} passed\n  ${lines.join("\n  ")}`,
    );
  });
  // four cases at a time, each in its own home
  const groups: Case[][] = [];
  for (let i = 0; i < CASES.length; i += 4) groups.push(CASES.slice(i, i + 4));
  for (const g of groups) {
    test(g.map((c) => `${c.op}/${c.step}/${c.proc}`).join(", "), async () => {
      const out = await Promise.all(g.map((c) => runCase(c, HC)));
      lines.push(...out);
    }, 180_000);
  }
});

guest.describe("real guest: crash matrix subset", () => {
  let home: string;
  beforeAll(async () => {
    home = await guestHome();
  }, 900_000);

  const qemuOf = (h: string) => processesOf(h).filter((p) => p.text.includes("qemu-system"));

  test("real guest: create killed while seeding leaves no QEMU, record or directory, by itself", async () => {
    const seed = seedDir();
    const markFile = join(home, `mark-create-${process.pid}`);
    const ls = () => (existsSync(join(home, "workspaces")) ? readdirSync(join(home, "workspaces")) : []);
    const before = new Set(ls());
    const r = await pyro(["workspace", "create", "debian:12", "--seed-path", seed, "--json"], {
      home,
      env: { PYRO_FAULT: "create.seed", PYRO_FAULT_PROC: "cli", PYRO_FAULT_MARK: markFile },
    });
    expect(readFileSync(markFile, "utf8")).toContain("create.seed cli");
    expect(r.code).not.toBe(0);
    const mine = () => ls().filter((n) => !before.has(n));
    // no pyro command runs meanwhile: the supervisor notices its creator died and cleans up
    expect(await waitFor(() => mine().length === 0, 30_000)).toBe(true);
    // and its supervisor and QEMU are gone with it
    const stray = () => processesOf(home).filter((p) => ![...before].some((id) => p.text.includes(id)));
    expect(await waitFor(() => stray().length === 0, 10_000)).toBe(true);
    expect(qemuOf(home)).toEqual([]);
  }, 300_000);

  test("real guest: VMM killed mid-exec, then supervisor killed mid-stop: truthful status, start repairs, a.txt old or new", async () => {
    const seed = seedDir();
    const made = await pyro(["workspace", "create", "debian:12", "--seed-path", seed, "--json"], { home });
    expect(made.code).toBe(0);
    const id = made.json.workspace_id as string;
    const mine = () => processesOf(home).filter((p) => p.text.includes(id));
    try {
      expect(mine().some((p) => p.text.includes("qemu-system"))).toBe(true); // the probe
      const markFile = join(home, `mark-exec-${id}`);
      const ex = await pyro(
        [
          "workspace",
          "exec",
          id,
          "--json",
          "--",
          "sh",
          "-c",
          "echo new > a.txt; echo out; sleep 2; echo done",
        ],
        { home, env: { PYRO_FAULT: "exec.output", PYRO_FAULT_PROC: "vmm", PYRO_FAULT_MARK: markFile } },
      );
      expect(readFileSync(markFile, "utf8")).toContain("exec.output vmm");
      expect(ex.code).not.toBe(0);
      expect(typeof ex.json?.code).toBe("string");
      expect(await waitFor(async () => (await violation(home, {})) === null, 20_000)).toBe(true);
      const st = await pyro(["workspace", "status", id, "--json"], { home });
      expect(st.json.state).toBe("stopped");
      expect(st.json.stop_reason).toBeTruthy();
      expect(mine()).toEqual([]);

      // the supervisor reads PYRO_FAULT from the command that starts it: arm its end at start
      const mark2 = join(home, `mark-stop-${id}`);
      const armed = {
        PYRO_FAULT: "supervisor.ending",
        PYRO_FAULT_PROC: "supervisor",
        PYRO_FAULT_MARK: mark2,
      };
      expect((await pyro(["workspace", "start", id, "--json"], { home, env: armed })).json.state).toBe(
        "started",
      );
      const cat1 = await pyro(["workspace", "exec", id, "--json", "--", "cat", "a.txt"], { home });
      expect(["old\n", "new\n"]).toContain(cat1.json.stdout);

      await pyro(["workspace", "stop", id, "--json"], { home });
      expect(readFileSync(mark2, "utf8")).toContain("supervisor.ending supervisor");
      // the supervisor died before shutting the machine down: its QEMU went with it (pdeathsig)
      expect(await waitFor(() => mine().length === 0, 10_000)).toBe(true);
      expect(await violation(home, {})).toBeNull();
      expect((await pyro(["workspace", "status", id, "--json"], { home })).json.state).toBe("stopped");
      expect((await pyro(["workspace", "start", id, "--json"], { home })).json.state).toBe("started");
      const cat2 = await pyro(["workspace", "exec", id, "--json", "--", "cat", "a.txt"], { home });
      expect(["old\n", "new\n"]).toContain(cat2.json.stdout);
    } finally {
      await pyro(["workspace", "delete", id, "--json"], { home });
    }
    expect(mine()).toEqual([]);
    expect(existsSync(join(home, "workspaces", id))).toBe(false);
  }, 600_000);
});
