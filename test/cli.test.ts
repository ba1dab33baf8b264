/** The CLI as a user runs it (compiled dist/pyro), on the host-compat backend. */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, freshHome, PYRO, processesMatching, pyro, waitFor } from "./helpers.ts";

const HC = { PYRO_BACKEND: "host" };

beforeAll(async () => {
  await ensureBuilt();
});

describe("executables", () => {
  test("dist/pyro --version works from another directory", async () => {
    const r = await pyro(["--version"], { cwd: "/" });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^pyro \d+\.\d+\.\d+/);
  });

  test("--help lists the command tree and operation help has description and examples", async () => {
    const top = await pyro(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain("workspace");
    const run = await pyro(["run", "--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("--timeout-seconds");
    expect(run.stdout).toContain("EXAMPLES");
  });
});

describe("pyro run (host compat)", () => {
  test("prints both streams, reports exit_code 3 and exits 3", async () => {
    const r = await pyro(
      [
        "run",
        "--allow-host-compat",
        "--json",
        "debian:12",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
      ],
      { home: freshHome() },
    );
    expect(r.code).toBe(3);
    expect(r.json.exit_code).toBe(3);
    expect(r.json.stdout).toBe("out\n");
    expect(r.json.stderr).toBe("err\n");
    expect(r.json.execution_mode).toBe("host_compat");
    expect(r.json.backend).toBe("host");
    expect(r.json.accelerator).toBeNull();
  });

  test("human mode streams the command's output and exits with its code", async () => {
    const r = await pyro(
      ["run", "--allow-host-compat", "debian:12", "--", "sh", "-c", "echo visible; exit 7"],
      { home: freshHome() },
    );
    expect(r.code).toBe(7);
    expect(r.stdout).toBe("visible\n");
  });

  test("a timeout is a result: exit 124, timed_out, partial output", async () => {
    const r = await pyro(
      [
        "run",
        "--allow-host-compat",
        "--json",
        "--timeout-seconds",
        "1",
        "debian:12",
        "--",
        "sh",
        "-c",
        "echo before; sleep 30",
      ],
      { home: freshHome() },
    );
    expect(r.code).toBe(124);
    expect(r.json.timed_out).toBe(true);
    expect(r.json.stdout).toBe("before\n");
  });

  test("leaves no run directory or agent behind", async () => {
    const home = freshHome();
    await pyro(["run", "--allow-host-compat", "debian:12", "--", "true"], { home });
    const runs = join(home, "runs");
    expect(existsSync(runs) ? readdirSync(runs) : []).toEqual([]);
    expect(processesMatching(home)).toEqual([]);
  });

  test("without an environment or opt-in, host compat is never chosen silently", async () => {
    const r = await pyro(["run", "--json", "debian:12", "--", "true"], {
      home: freshHome(),
      env: { PYRO_AUTO_BUILD: "0", PYRO_REGISTRY: "" },
    });
    expect(r.code).toBe(66);
    expect(r.json.code).toBe("ENVIRONMENT_NOT_FOUND");
    expect(r.json.hint).toContain("pyro env build debian:12");
  });
});

describe("bad input", () => {
  const home = freshHome();
  const cases: Array<[string, string[], string, number]> = [
    ["unknown workspace", ["workspace", "status", "ws_000000000000", "--json"], "WORKSPACE_NOT_FOUND", 66],
    [
      "unknown workspace name",
      ["workspace", "exec", "nope", "--json", "--", "true"],
      "WORKSPACE_NOT_FOUND",
      66,
    ],
    [
      "invalid name",
      ["workspace", "create", "--allow-host-compat", "--name", "Bad Name", "--json"],
      "INVALID_INPUT",
      64,
    ],
    [
      "name shaped like an id",
      ["workspace", "create", "--allow-host-compat", "--name", "ws_0123456789ab", "--json"],
      "INVALID_INPUT",
      64,
    ],
    [
      "negative timeout",
      ["run", "--allow-host-compat", "--timeout-seconds", "-5", "--json", "debian:12", "--", "true"],
      "INVALID_INPUT",
      64,
    ],
    [
      "non-numeric timeout",
      ["run", "--allow-host-compat", "--timeout-seconds", "soon", "--json", "debian:12", "--", "true"],
      "INVALID_INPUT",
      64,
    ],
    ["unknown flag", ["workspace", "list", "--colour", "--json"], "INVALID_INPUT", 64],
    [
      "unknown environment",
      ["run", "--allow-host-compat", "--json", "plan9:4", "--", "true"],
      "ENVIRONMENT_NOT_FOUND",
      66,
    ],
    ["missing command", ["run", "--allow-host-compat", "--json", "debian:12"], "INVALID_INPUT", 64],
    [
      "bad label",
      ["workspace", "create", "--allow-host-compat", "--label", "novalue", "--json"],
      "INVALID_INPUT",
      64,
    ],
  ];
  for (const [what, args, code, exit] of cases) {
    test(`${what} → ${code} (exit ${exit}), no partial record`, async () => {
      const r = await pyro(args, { home, env: HC });
      expect(r.json?.code).toBe(code);
      expect(typeof r.json?.message).toBe("string");
      expect(r.code).toBe(exit);
      const ws = join(home, "workspaces");
      expect(existsSync(ws) ? readdirSync(ws) : []).toEqual([]);
    });
  }

  test("human mode: one line on stderr with the code, nothing on stdout", async () => {
    const r = await pyro(["workspace", "status", "missing"], { home });
    expect(r.code).toBe(66);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("[WORKSPACE_NOT_FOUND]");
  });
});

describe("workspaces (host compat)", () => {
  test("lifecycle: create, exec, list by name and label, update, logs, delete", async () => {
    const home = freshHome();
    const c = await pyro(
      [
        "workspace",
        "create",
        "debian:12",
        "--allow-host-compat",
        "--name",
        "issue-1",
        "--label",
        "issue=1",
        "--json",
      ],
      { home },
    );
    expect(c.code).toBe(0);
    expect(c.json.workspace_id).toMatch(/^ws_[0-9a-f]{12}$/);
    expect(c.json.state).toBe("started");
    expect(c.json.execution_mode).toBe("host_compat");
    expect(c.json.labels).toEqual({ issue: "1" });
    const dup = await pyro(["workspace", "create", "--allow-host-compat", "--name", "issue-1", "--json"], {
      home,
    });
    expect(dup.json.code).toBe("NAME_CONFLICT");

    const e = await pyro(
      [
        "workspace",
        "exec",
        "issue-1",
        "--json",
        "--",
        "sh",
        "-c",
        "echo hi > note.txt; cat note.txt; exit 4",
      ],
      { home },
    );
    expect(e.code).toBe(4);
    expect(e.json.stdout).toBe("hi\n");
    expect(e.json.workspace_id).toBe(c.json.workspace_id);
    const again = await pyro(["workspace", "exec", c.json.workspace_id, "--json", "--", "cat", "note.txt"], {
      home,
    });
    expect(again.json.stdout).toBe("hi\n");

    const l = await pyro(["workspace", "list", "--label", "issue=1", "--json"], { home });
    expect(l.json.count).toBe(1);
    const u = await pyro(
      [
        "workspace",
        "update",
        "issue-1",
        "--name",
        "issue-1b",
        "--label",
        "k=v",
        "--clear-label",
        "issue",
        "--json",
      ],
      { home },
    );
    expect(u.json.name).toBe("issue-1b");
    expect(u.json.labels).toEqual({ k: "v" });

    const logs = await pyro(["workspace", "logs", "issue-1b", "--json"], { home });
    expect(logs.json.count).toBe(2);
    expect(logs.json.entries[0].exit_code).toBe(4);

    const d = await pyro(["workspace", "delete", "issue-1b", "--json"], { home });
    expect(d.json.deleted).toBe(true);
    expect(processesMatching(c.json.workspace_id)).toEqual([]);
    const gone = await pyro(["workspace", "status", c.json.workspace_id, "--json"], { home });
    expect(gone.json.code).toBe("WORKSPACE_NOT_FOUND");
  });

  test("outlives its creator; 20 concurrent exec processes all succeed with their own output", async () => {
    const home = freshHome();
    const c = await pyro(["workspace", "create", "--allow-host-compat", "--id-only"], { home });
    const id = c.stdout.trim();
    expect(id).toMatch(/^ws_/);
    const runs = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        pyro(["workspace", "exec", id, "--json", "--", "sh", "-c", `echo run-${i}`], { home }),
      ),
    );
    runs.forEach((r, i) => {
      expect(r.code).toBe(0);
      expect(r.json.stdout).toBe(`run-${i}\n`);
    });
    const logs = await pyro(["workspace", "logs", id, "--json"], { home });
    expect(logs.json.count).toBe(20);
    const cmds = new Set(logs.json.entries.map((e: any) => e.argv.join(" ")));
    expect(cmds.size).toBe(20);
    await pyro(["workspace", "delete", id], { home });
  });

  test("kill -9 of the supervisor leaves no orphan, and status says what happened", async () => {
    const home = freshHome();
    const id = (
      await pyro(["workspace", "create", "--allow-host-compat", "--id-only"], { home })
    ).stdout.trim();
    await pyro(["workspace", "exec", id, "--", "sh", "-c", "sleep 1234 >/dev/null 2>&1 &"], { home });
    const running = pyro(["workspace", "exec", id, "--timeout-seconds", "300", "--", "sleep", "4321"], {
      home,
    });
    expect(await waitFor(() => processesMatching("sleep 4321").length > 0)).toBe(true);
    const status = await pyro(["workspace", "status", id, "--json"], { home });
    expect(status.json.state).toBe("started");
    const sup = processesMatching(`__supervise --id ${id}`);
    expect(sup.length).toBe(1);
    process.kill(Number(sup[0]?.split(" ")[0]), "SIGKILL");
    const r = await running;
    expect(r.code).not.toBe(0);
    expect(
      await waitFor(
        () => processesMatching("sleep 1234").length === 0 && processesMatching("sleep 4321").length === 0,
      ),
    ).toBe(true);
    expect(processesMatching(id)).toEqual([]);
    const after = await pyro(["workspace", "status", id, "--json"], { home });
    expect(after.json.state).toBe("stopped");
    expect(after.json.stop_reason).toContain("supervisor died");
    const exec = await pyro(["workspace", "exec", id, "--json", "--", "true"], { home });
    expect(exec.json.code).toBe("WORKSPACE_NOT_STARTED");
    await pyro(["workspace", "delete", id], { home });
  });

  test("stop keeps files, start resumes them", async () => {
    const home = freshHome();
    const id = (
      await pyro(["workspace", "create", "--allow-host-compat", "--id-only"], { home })
    ).stdout.trim();
    await pyro(["workspace", "exec", id, "--", "sh", "-c", "echo kept > kept.txt"], { home });
    const s = await pyro(["workspace", "stop", id, "--json"], { home });
    expect(s.json.state).toBe("stopped");
    expect(processesMatching(`__supervise --id ${id}`)).toEqual([]);
    const st = await pyro(["workspace", "start", id, "--json"], { home });
    expect(st.json.state).toBe("started");
    const r = await pyro(["workspace", "exec", id, "--json", "--", "cat", "kept.txt"], { home });
    expect(r.json.stdout).toBe("kept\n");
    await pyro(["workspace", "delete", id], { home });
  });

  test("at most N running workspaces, with a clear error past it", async () => {
    const home = freshHome();
    const env = { PYRO_MAX_ACTIVE_VMS: "2" };
    const a = await pyro(["workspace", "create", "--allow-host-compat", "--id-only"], { home, env });
    const b = await pyro(["workspace", "create", "--allow-host-compat", "--id-only"], { home, env });
    const c = await pyro(["workspace", "create", "--allow-host-compat", "--json"], { home, env });
    expect(c.json.code).toBe("WORKSPACE_LIMIT_REACHED");
    expect(c.code).toBe(75);
    expect((await pyro(["workspace", "list", "--json"], { home })).json.count).toBe(2);
    await pyro(["workspace", "delete", a.stdout.trim()], { home });
    await pyro(["workspace", "delete", b.stdout.trim()], { home });
  });

  test("TTL expiry deletes the workspace", async () => {
    const home = freshHome();
    const id = (
      await pyro(["workspace", "create", "--allow-host-compat", "--ttl-seconds", "1", "--id-only"], { home })
    ).stdout.trim();
    expect(
      await waitFor(
        async () =>
          (await pyro(["workspace", "status", id, "--json"], { home })).json.code === "WORKSPACE_NOT_FOUND",
        15000,
      ),
    ).toBe(true);
    expect(processesMatching(id)).toEqual([]);
  }, 30_000);
});

test("PYRO executable path is the compiled one", () => {
  expect(existsSync(PYRO)).toBe(true);
});

test("the compiled agent runs a PTY (Bun.Terminal) from any directory", async () => {
  const { AGENT } = await import("./helpers.ts");
  const p = Bun.spawn([AGENT, "--selftest-pty"], { cwd: "/", stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  expect(await p.exited).toBe(0);
  const r = JSON.parse(out);
  expect(r.ok).toBe(true);
  expect(r.output).toMatch(/\/dev\/pts\/\d+/);
});
