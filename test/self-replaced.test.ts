/**
 * An executable replaced while pyro runs (an upgrade, or another test rebuilding dist/):
 * the supervisor a create launches must still start. Before, the CLI spawned its own path,
 * which the kernel reports as "PATH (deleted)" once the file is replaced: the create failed
 * with FILE_NOT_FOUND "no such file or directory: …/pyro (deleted)" (the crash matrix's
 * flaky case, caught by looping it while other tests rebuilt dist/), and a long-running
 * `pyro mcp serve` could not create or start any workspace after an upgrade.
 * src/manager/self.ts. Host compat; the create is held (PYRO_FAULT_PROC=hold) right before it
 * launches the supervisor while the test replaces the executable.
 */
import { beforeAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, freshHome, PYRO, waitFor } from "./helpers.ts";

beforeAll(async () => {
  await ensureBuilt();
}, 300_000);

async function run(exe: string, args: string[], env: Record<string, string>) {
  const p = Bun.spawn([exe, ...args], {
    env: { ...(process.env as Record<string, string>), ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return p;
}

test("a create whose executable is replaced before it launches the supervisor still succeeds", async () => {
  const bin = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "bin-"));
  const exe = join(bin, "pyro");
  copyFileSync(PYRO, exe);
  const home = freshHome();
  const mark = join(home, "mark");
  const base = { PYRO_HOME: home, PYRO_BACKEND: "host" };
  const p = await run(exe, ["workspace", "create", "debian:12", "--allow-host-compat", "--json"], {
    ...base,
    PYRO_FAULT: "create.disk",
    PYRO_FAULT_PROC: "hold",
    PYRO_FAULT_MARK: mark,
  });
  try {
    // the probe: the create is held at the step, before the supervisor exists
    expect(await waitFor(() => existsSync(mark) && readFileSync(mark, "utf8").includes("hold"), 60_000)).toBe(
      true,
    );
    const [, , , pid] = readFileSync(mark, "utf8").trim().split(" ");
    expect(Number(pid)).toBe(p.pid);
    // an upgrade: a new file renamed over the running one
    copyFileSync(PYRO, `${exe}.new`);
    renameSync(`${exe}.new`, exe);
    expect(readFileSync(`/proc/${p.pid}/cmdline`, "utf8").length).toBeGreaterThan(0);
    process.kill(p.pid, "SIGCONT");
    const [out, err, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    if (code !== 0) throw new Error(`create exited ${code}: ${out}${err}`);
    const made = JSON.parse(out);
    expect(made.state).toBe("started");
    const ex = await run(exe, ["workspace", "exec", made.workspace_id, "--json", "--", "echo", "hi"], base);
    const exOut = await new Response(ex.stdout).text();
    expect(await ex.exited).toBe(0);
    expect(JSON.parse(exOut).stdout).toBe("hi\n");
    const del = await run(exe, ["workspace", "delete", made.workspace_id, "--json"], base);
    expect(await del.exited).toBe(0);
  } finally {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {}
  }
}, 120_000);
