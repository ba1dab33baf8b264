/**
 * Detached exec in host compat (the CLI against a real supervisor and host agent): the
 * shared cases (test/detached-cases.ts), plus what is cheap only here: a supervisor killed
 * outright, kill, binary and cut-character reads, bad input with stable codes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { readAll, runningAtStopIsRecorded, seqSurvivesItsClient } from "./detached-cases.ts";
import { ensureBuilt, freshHome, pyro, waitFor } from "./helpers.ts";

let home = "";
let ws = "";
const env = { PYRO_BACKEND: "host" };
const run = (args: string[]) => pyro(args, { home, env });
const execsOf = (id: string) => readdirSync(join(home, "workspaces", id, "logs", "exec"));

beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
  const c = await run(["workspace", "create", "--allow-host-compat", "--name", "detached", "--json"]);
  expect(c.code).toBe(0);
  ws = c.json.workspace_id;
}, 180_000);
afterAll(async () => {
  if (ws) await run(["workspace", "delete", ws]);
});

describe("detached exec (host compat)", () => {
  test("seq 1 500000 survives its client, reads back whole by offset, and ran once per key", async () => {
    await seqSurvivesItsClient(home, ws);
  });

  test("exec-kill ends a running command with the signal recorded; killing it again is a no-op", async () => {
    const s = await run([
      "workspace",
      "exec",
      ws,
      "--detach",
      "--json",
      "--",
      "sh",
      "-c",
      "echo up; exec sleep 1000",
    ]);
    const execId = s.json.exec_id;
    expect(
      await waitFor(
        async () => (await run(["workspace", "exec-read", ws, execId, "--json"])).json.data === "up\n",
      ),
    ).toBe(true);
    const k = await run(["workspace", "exec-kill", ws, execId, "--json"]);
    expect(k.code).toBe(0);
    expect(k.json.signalled).toBe(true);
    expect(k.json.state).toBe("exited");
    expect(k.json.exit_code).toBe(137);
    expect(k.json.end_reason).toBe("killed by request (SIGKILL)");
    const again = await run(["workspace", "exec-kill", ws, execId, "--json"]);
    expect(again.json.signalled).toBe(false);
    expect(again.json.exit_code).toBe(137);
  });

  test("reads are binary-safe and never split a character", async () => {
    const s = await run([
      "workspace",
      "exec",
      ws,
      "--detach",
      "--json",
      "--",
      "sh",
      "-c",
      "printf 'é%.0s' $(seq 1 100); printf 'a\\000b' >&2",
    ]);
    const execId = s.json.exec_id;
    await run(["workspace", "exec-wait", ws, execId]);
    // 3 bytes would cut the second é: the read stops after the first, whole
    const one = await run(["workspace", "exec-read", ws, execId, "--max-bytes", "3", "--json"]);
    expect(one.json.data).toBe("é");
    expect(one.json.next_offset).toBe(2);
    const { text } = await readAll(home, ws, execId, "stdout", 5);
    expect(text).toBe("é".repeat(100));
    const err = await run(["workspace", "exec-read", ws, execId, "--stream", "stderr", "--json"]);
    expect(err.json.encoding).toBe("base64");
    expect(Buffer.from(err.json.data, "base64")).toEqual(Buffer.from("a\0b", "latin1"));
    expect(err.json.eof).toBe(true);
    const raw = await run(["workspace", "exec-read", ws, execId, "--stream", "stderr", "--content-only"]);
    expect(Buffer.from(raw.stdout, "latin1")).toEqual(Buffer.from("a\0b", "latin1"));
  });

  test("bad input: stable codes and exit codes, nothing left behind", async () => {
    const s = await run(["workspace", "exec", ws, "--detach", "--json", "--", "printf", "0123456789"]);
    const execId = s.json.exec_id;
    await run(["workspace", "exec-wait", ws, execId]);
    const before = execsOf(ws).length;
    // the probe works: reading at the very end is fine (empty, eof)
    const end = await run(["workspace", "exec-read", ws, execId, "--offset", "10", "--json"]);
    expect(end.code).toBe(0);
    expect(end.json).toMatchObject({ data: "", next_offset: 10, eof: true });
    const cases: Array<[string[], string, number]> = [
      [["workspace", "exec-read", ws, "ex_000000000000"], "EXEC_NOT_FOUND", 66],
      [["workspace", "exec-wait", ws, "../../etc"], "EXEC_NOT_FOUND", 66],
      [["workspace", "exec-kill", ws, "nope"], "EXEC_NOT_FOUND", 66],
      [["workspace", "exec-read", ws, execId, "--offset", "11"], "OFFSET_OUT_OF_RANGE", 65],
      [["workspace", "exec-read", ws, execId, "--offset", "-1"], "INVALID_INPUT", 64],
      [["workspace", "exec-read", ws, execId, "--stream", "stdin"], "INVALID_INPUT", 64],
      [["workspace", "exec", ws, "--idempotency-key", "k", "--", "true"], "INVALID_INPUT", 64],
      [["workspace", "exec", ws, "--detach", "--", "sh", "-c", "true"], "", 0],
      [
        ["workspace", "exec", ws, "--detach", "--cwd", "/workspace/missing", "--", "true"],
        "FILE_NOT_FOUND",
        66,
      ],
      [["workspace", "exec", ws, "--text-budget-chars", "2000", "--", "true"], "INVALID_INPUT", 64],
    ];
    for (const [args, code, exit] of cases) {
      const r = await run([...args.slice(0, 2), "--json", ...args.slice(2)]);
      expect([args.join(" "), r.code]).toEqual([args.join(" "), exit]);
      if (code) expect([args.join(" "), r.json.code]).toEqual([args.join(" "), code]);
    }
    // only the one good start above added an exec; the failed start left no spool
    expect(execsOf(ws).length).toBe(before + 1);
  });

  test("a supervisor killed outright: its exec reads as lost at once, and the next start writes that down", async () => {
    const s = await run([
      "workspace",
      "exec",
      ws,
      "--detach",
      "--json",
      "--",
      "sh",
      "-c",
      "echo before; exec sleep 1000",
    ]);
    const execId = s.json.exec_id;
    const status = await run(["workspace", "status", ws, "--json"]);
    const rec = JSON.parse(await Bun.file(join(home, "workspaces", ws, "workspace.json")).text());
    expect(status.json.state).toBe("started");
    process.kill(rec.supervisor_pid, "SIGKILL");
    const lost = await run(["workspace", "exec-wait", ws, execId, "--json"]);
    expect(lost.json.state).toBe("lost");
    expect(lost.json.end_reason).toContain("supervisor ended before the command");
    const endFile = join(home, "workspaces", ws, "logs", "exec", execId, "end.json");
    expect(existsSync(endFile)).toBe(false);
    expect((await run(["workspace", "start", ws])).code).toBe(0);
    expect(existsSync(endFile)).toBe(true);
    const after = await run(["workspace", "exec-read", ws, execId, "--json"]);
    expect(after.json).toMatchObject({ data: "before\n", eof: true, state: "lost" });
  });

  test("a command running at workspace stop ends lost with the reason; its output stays readable", async () => {
    const execId = await runningAtStopIsRecorded(home, ws);
    const list = await run(["workspace", "exec-list", ws, "--json"]);
    expect(list.json.execs.find((x: any) => x.exec_id === execId).state).toBe("lost");
    expect((await run(["workspace", "start", ws])).code).toBe(0);
    const still = await run(["workspace", "exec-wait", ws, execId, "--json"]);
    expect(still.json.end_reason).toContain("stopped by request");
  });

  test("reset clears detached execs with the command history", async () => {
    expect((await run(["workspace", "exec-list", ws, "--json"])).json.count).toBeGreaterThan(0);
    expect((await run(["workspace", "reset", ws])).code).toBe(0);
    expect((await run(["workspace", "exec-list", ws, "--json"])).json.count).toBe(0);
  });
});
