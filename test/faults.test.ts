/**
 * The crash matrix (issue 15, part 1; docs/reliability.md "Crash matrix"). Each case runs one
 * pyro command with a test-only crash point armed (src/base/fault.ts: PYRO_FAULT=<step>,
 * PYRO_FAULT_PROC=cli|supervisor|vmm) so the CLI, the supervisor or the VMM is SIGKILLed at
 * that step, then checks, after things settle:
 * - the step was reached (PYRO_FAULT_MARK records it: a case that never fired fails);
 * - nothing leaked (test/faults-cases.ts): every process of the home (by argv or environment:
 *   supervisors, QEMU) belongs to a workspace `list` shows as started, a stopped one has no
 *   process, socket or tap, no workspace holds a half-written disk or staging file, and
 *   workspaces/ holds exactly the listed workspaces (no orphan directory, staging or trash);
 * - `list` and `status` agree and tell the truth: a create exists exactly when the command
 *   said it succeeded;
 * - the next commands repair: a stopped workspace starts, /workspace/a.txt holds the old or
 *   the new content (never anything else), delete leaves nothing, and the name is free again.
 *
 * The same matrix runs twice: in host compat (cheap; there the "VMM" is the host agent
 * process) and against real QEMU guests. Real-guest cases each get a fresh PYRO_HOME whose
 * `environments/` and `templates/` are symlinks to one shared home where debian:12 is
 * installed and its VM template made once (`pyro prepare`): every boot restores the template
 * (asserted: the template is the same files before and after, and the repair's create says
 * `boot: template`), and no case writes into the shared directories.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { expectSettled, type Listed, processesOf, tapLeft, violation } from "./faults-cases.ts";
import { guest, guestHome } from "./guest-env.ts";
import { ensureBuilt, freshHome, type PyroResult, pyro, waitFor } from "./helpers.ts";

type Proc = "cli" | "supervisor" | "vmm";
/** host: host compat (`--allow-host-compat`); guest: a real QEMU guest */
type Backend = "host" | "guest";
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

/** `workspace create` of the seeded workspace `w` (or a bare one), on the backend. */
function createArgs(backend: Backend, seed: string | null): string[] {
  return [
    "workspace",
    "create",
    "debian:12",
    ...(backend === "host" ? ["--allow-host-compat"] : []),
    ...(seed ? ["--seed-path", seed] : []),
    "--name",
    "w",
    "--json",
  ];
}

/** A command that must succeed; its whole output in the error when it did not. */
function succeeded(r: PyroResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stdout}${r.stderr}`);
}

/**
 * The next commands repair: start what is stopped, read a.txt (old or new), delete; the name is
 * free (checked by a new create; on real guests, where a boot is dear, after creates and
 * deletes, the cases that can hold a name).
 */
async function expectRepairs(
  home: string,
  env: Record<string, string>,
  listed: Listed[],
  backend: Backend,
  nameCheck: boolean,
): Promise<void> {
  for (const w of listed) {
    if (w.state !== "started") {
      const s = await pyro(["workspace", "start", w.workspace_id, "--json"], { home, env });
      expect(s.json?.state ?? s.stdout).toBe("started");
      // a real guest restores the shared template (the case did not drop it)
      if (backend === "guest") expect(s.json?.boot).toBe("template");
    }
    const cat = await pyro(["workspace", "exec", w.workspace_id, "--json", "--", "cat", "a.txt"], {
      home,
      env,
    });
    expect(["old\n", "new\n"]).toContain(cat.json?.stdout);
    succeeded(await pyro(["workspace", "delete", w.workspace_id, "--json"], { home, env }), "delete");
  }
  if (!nameCheck) {
    expect(await violation(home, env)).toBeNull();
    expect(readdirSync(join(home, "workspaces"))).toEqual([]);
    return;
  }
  const again = await pyro(createArgs(backend, null), { home, env });
  succeeded(again, "create w again");
  // a real guest restores the shared template (it was not dropped by the case)
  if (backend === "guest") expect(again.json?.boot).toBe("template");
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
function command(op: Op, seed: string, home: string, backend: Backend): string[] {
  switch (op) {
    case "create":
      return createArgs(backend, seed);
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
async function runCase(
  c: Case,
  backend: Backend,
  env: Record<string, string>,
  home = freshHome(),
): Promise<string> {
  const tc = Date.now();
  const seed = seedDir();
  mkdirSync(join(home, OUT_DIR), { recursive: true });
  const markFile = join(home, "fault-mark");
  /** how the machines booted (the records' `boot`: template or cold), setup and faulted command */
  const boots: string[] = [];
  let id: string | null = null;
  const faulty = { ...env, PYRO_FAULT: c.step, PYRO_FAULT_PROC: c.proc, PYRO_FAULT_MARK: markFile };
  if (c.op !== "create") {
    // A supervisor reads PYRO_FAULT once, from the command that started it: when the step is
    // the supervisor's (not reached while creating), it is armed at create.
    const made = await pyro(createArgs(backend, seed), {
      home,
      env: c.proc === "cli" || c.op === "start" ? env : faulty,
    });
    succeeded(made, "create w");
    id = made.json.workspace_id;
    boots.push(`setup ${made.json.boot}`);
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
  const res: PyroResult = await pyro(command(c.op, seed, home, backend), { home, env: faulty });
  id ??= res.json?.workspace_id ?? null;
  if (res.json?.boot) boots.push(`${c.op} ${res.json.boot}`);
  // the probe: the crash point was reached in the intended process
  const marks = existsSync(markFile) ? readFileSync(markFile, "utf8") : "";
  if (!marks.includes(`${c.step} ${c.proc}`))
    throw new Error(
      `${c.op}/${c.step}/${c.proc}: the step was not reached (marks ${JSON.stringify(marks)}); the command exited ${res.code}: ${res.stdout}${res.stderr}`,
    );
  if (c.proc === "cli") expect(res.code).not.toBe(0);
  // a command that survived the kill fails with an error that says what happened, never a bug's
  if (res.json?.code === "INTERNAL")
    throw new Error(`${c.op}/${c.step}/${c.proc}: INTERNAL: ${res.stdout.slice(0, 1500)}`);

  const listed = await expectSettled(home, env, backend === "guest" ? 40_000 : 20_000);
  // a stopped workspace says why
  for (const w of listed) {
    if (w.state === "started") continue;
    const st = await pyro(["workspace", "status", w.workspace_id, "--json"], { home, env });
    expect(st.json?.stop_reason ?? `${w.workspace_id} ${w.state} without a stop_reason`).toBeTruthy();
  }
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
  await expectRepairs(
    home,
    env,
    listed,
    backend,
    backend === "host" || c.op === "create" || c.op === "delete",
  );
  if (id) expect(tapLeft(id)).toBe(false);
  return `${c.op} ${c.step} ${c.proc}: command exit ${res.code}${res.json?.code ? ` ${res.json.code}` : ""}, after: ${
    listed.map((w) => w.state).join(",") || "none"
  }${boots.length ? `, boot: ${boots.join(", ")}` : ""}, ${Math.round((Date.now() - tc) / 1000)} s`;
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
      const out = await Promise.all(g.map((c) => runCase(c, "host", HC)));
      lines.push(...out);
    }, 180_000);
  }
});

/** The files of the shared home's templates (name, inode, size): unchanged by the matrix. */
function templateFiles(shared: string): string[] {
  const root = join(shared, "templates");
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((k) => !k.startsWith("."))
    .flatMap((k) =>
      readdirSync(join(root, k))
        .filter((f) => f === "ram" || f === "state" || f === "meta.json")
        .map((f) => {
          const st = statSync(join(root, k, f));
          return `${k}/${f} ino ${st.ino} size ${st.size} mtime ${st.mtimeMs}`;
        }),
    )
    .sort();
}

guest.describe("real guest: crash matrix", () => {
  let shared: string;
  let template: string[];
  let matrixSeconds = 0;
  const lines: string[] = [];
  beforeAll(async () => {
    shared = await guestHome();
    // the template, made once; every case's home links to it
    // (a make is a boot plus a save: give it time on a loaded machine; a failed one is retried)
    const slow = { PYRO_BOOT_TIMEOUT_MS: "180000" };
    // Always through prepare, which verifies the template of the cases' shape and remakes it if
    // broken or stale: the shared guest home also holds templates other test files left (other
    // shapes, or one a template test broke on purpose), so "some template exists" proves nothing.
    for (let i = 0; ; i++) {
      const prep = await pyro(["prepare", "debian:12", "--json"], { home: shared, env: slow });
      succeeded(prep, "prepare");
      if (prep.json?.template?.status === "ready") break;
      if (i === 1) throw new Error(`no template made: ${prep.stdout}`);
    }
    template = templateFiles(shared);
    expect(template.length).toBeGreaterThanOrEqual(3);
  }, 900_000);
  afterAll(() => {
    const steps = new Set(CASES.map((c) => `${c.op}:${c.step}`));
    const pairs = new Set(CASES.map((c) => `${c.step}/${c.proc}`));
    console.log(
      `crash matrix (real guest): ${steps.size} steps x killed process = ${pairs.size} step/process pairs, ${CASES.length} cases, ${lines.length} passed, ${lines.length === CASES.length ? "0 leaks" : `${CASES.length - lines.length} failed`}, ${matrixSeconds} s\n  ${lines.join("\n  ")}`,
    );
  });

  /** A fresh home sharing the installed environment and its template (read-only to the cases). */
  function caseHome(): string {
    const h = freshHome();
    symlinkSync(join(shared, "environments"), join(h, "environments"));
    symlinkSync(join(shared, "templates"), join(h, "templates"));
    return h;
  }

  // every case in its own home, three at a time (2 cores, TCG) from one queue
  guest.test(
    `real guest: crash matrix, every step x every killed process (${CASES.length} cases)`,
    async () => {
      const t0 = Date.now();
      const failures: string[] = [];
      const running = new Set<string>();
      let baseline = template;
      const queue = [...CASES];
      const worker = async () => {
        for (let c = queue.shift(); c; c = queue.shift()) {
          const name = `${c.op}/${c.step}/${c.proc}`;
          running.add(name);
          try {
            lines.push(await runCase(c, "guest", {}, caseHome()));
          } catch (err) {
            failures.push(`${name}: ${(err as Error).message}`);
          }
          // no case dropped, remade or wrote the shared template
          const now = templateFiles(shared);
          if (JSON.stringify(now) !== JSON.stringify(baseline)) {
            failures.push(`the shared template changed while ${[...running].join(", ")} ran`);
            baseline = now;
          }
          running.delete(name);
        }
      };
      await Promise.all([worker(), worker(), worker()]);
      matrixSeconds = Math.round((Date.now() - t0) / 1000);
      expect(failures).toEqual([]);
    },
    2_400_000,
  );

  const qemuOf = (h: string) => processesOf(h).filter((p) => p.text.includes("qemu-system"));

  guest.test(
    "real guest: create killed while seeding leaves no QEMU, record or directory, by itself",
    async () => {
      const home = caseHome();
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
    },
    300_000,
  );
});
