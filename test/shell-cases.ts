/**
 * Shell cases shared by the host-compat test (test/shell.test.ts) and the real-guest test
 * (test/shell-guest.test.ts): each drives the compiled CLI (one process per call, so every
 * case also proves a shell outlives the client that used it) against a started workspace and
 * asserts what docs/public-contract.md ("Shells") says.
 *
 * debian:12 has no python3 and no less: the REPL case runs a bash `read -p '>>> '` loop
 * (same prompt/echo/answer shape as `python3 -q` with `1+1`), and the pager case uses
 * `more` (util-linux) when `less` is missing.
 */
import { expect } from "bun:test";
import { PYRO, type PyroResult } from "./helpers.ts";

export type Run = (args: string[]) => Promise<PyroResult>;

const ESC = "\u001b";
/** Reads wait this long for the shell to go quiet; loops allow slow (TCG) guests. */
const IDLE_MS = "400";
const PATIENCE_MS = 120_000;

export async function openShell(run: Run, ws: string, extra: string[] = []): Promise<string> {
  const r = await run(["workspace", "shell", "open", ws, "--json", ...extra]);
  expect(r.code).toBe(0);
  expect(r.json.state).toBe("running");
  expect(r.json.shell_id).toMatch(/^sh_[0-9a-f]{12}$/);
  return r.json.shell_id;
}

export async function write(run: Run, ws: string, sh: string, input: string, newline = true): Promise<void> {
  const r = await run([
    "workspace",
    "shell",
    "write",
    ws,
    sh,
    "--input",
    input,
    ...(newline ? [] : ["--no-newline"]),
  ]);
  expect(r.code).toBe(0);
}

/** The end of the output so far (a cursor for "from now on"). */
async function endCursor(run: Run, ws: string, sh: string): Promise<number> {
  const r = await run(["workspace", "shell", "read", ws, sh, "--json", "--max-chars", "1"]);
  expect(r.code).toBe(0);
  return r.json.output_chars;
}

/** Read from `cursor` (plain or raw) until `ok(output)` holds; the last read. */
export async function readUntil(
  run: Run,
  ws: string,
  sh: string,
  cursor: number,
  ok: (output: string) => boolean,
  plain = true,
): Promise<{ output: string; json: any }> {
  const deadline = Date.now() + PATIENCE_MS;
  for (;;) {
    const args = ["workspace", "shell", "read", ws, sh, "--json", "--cursor", String(cursor)];
    const r = await run([
      ...args,
      "--wait-for-idle-ms",
      IDLE_MS,
      "--max-chars",
      "4000000",
      ...(plain ? ["--plain"] : []),
    ]);
    expect(r.code).toBe(0);
    if (ok(r.json.output) || Date.now() > deadline) {
      expect(r.json.output).toSatisfy(ok);
      return { output: r.json.output, json: r.json };
    }
  }
}

const lines = (s: string) => s.split("\n");

/** A REPL-shaped exchange: prompt, echoed input, answer; plain text without escape bytes. */
export async function replEcho(run: Run, ws: string): Promise<void> {
  const sh = await openShell(run, ws);
  await write(run, ws, sh, `while read -r -p '>>> ' x; do echo $((x)); done`);
  // the prompt itself, on a line of its own: the terminal's echo of the typed loop also holds
  // ">>> ", and typing 1+1 before bash prints the prompt puts it before ">>> " on screen
  await readUntil(run, ws, sh, 0, (o) => /^>>>/m.test(o));
  await write(run, ws, sh, "1+1");
  const { output, json } = await readUntil(run, ws, sh, 0, (o) => /^2$/m.test(o));
  expect(lines(output)).toContain(">>> 1+1");
  expect(lines(output)).toContain("2");
  expect(output).not.toContain(ESC);
  expect(output).not.toContain("\r");
  expect(json.plain).toBe(true);
  // the same slice raw does carry terminal bytes (the probe above can fail)
  const raw = await run(["workspace", "shell", "read", ws, sh, "--json"]);
  expect(raw.json.output).toContain("\r\n");
  await close(run, ws, sh);
}

/** `\r` overwrites and a progress bar render as their final line. */
export async function carriageReturns(run: Run, ws: string): Promise<void> {
  const sh = await openShell(run, ws);
  await write(
    run,
    ws,
    sh,
    `printf 'a\\rb\\n'; for i in 1 2 3 4 5; do printf '\\rprogress %d%%' $((i*20)); done; echo; echo cr-$((6*7))`,
  );
  const { output } = await readUntil(run, ws, sh, 0, (o) => /^cr-42$/m.test(o));
  const ls = lines(output);
  expect(ls).toContain("b");
  expect(ls).toContain("progress 100%");
  expect(output).not.toContain("progress 20%");
  expect(output).not.toContain(ESC);
  // raw keeps what was printed: the overwritten text is there
  const raw = await readUntil(run, ws, sh, 0, (o) => o.includes("cr-42"), false);
  expect(raw.output).toContain("a\rb");
  expect(raw.output).toContain("progress 20%");
  await close(run, ws, sh);
}

/** top -b -n1, interactive top and a pager (less, else more) render as readable screens. */
export async function fullScreen(run: Run, ws: string): Promise<void> {
  const sh = await openShell(run, ws, ["--cols", "100", "--rows", "24"]);
  await write(run, ws, sh, "top -b -n1 | head -20; echo top-done");
  const batch = await readUntil(run, ws, sh, 0, (o) => /^top-done$/m.test(o));
  expect(batch.output).toMatch(/^\s*PID\s+USER\b/m);
  expect(batch.output).toContain("load average");
  expect(batch.output).not.toContain(ESC);

  let from = await endCursor(run, ws, sh);
  await write(run, ws, sh, "top -d 1");
  const top = await readUntil(run, ws, sh, from, (o) => /PID\s+USER/.test(o) && /^Tasks:/m.test(o));
  expect(top.output).not.toContain(ESC);
  for (const l of lines(top.output)) expect(l.length).toBeLessThanOrEqual(100);
  await write(run, ws, sh, "q", false);
  await write(run, ws, sh, "echo after-top");
  await readUntil(run, ws, sh, from, (o) => /^after-top$/m.test(o));

  await write(run, ws, sh, "seq 1 200 | sed 's/^/line /' > pager.txt");
  from = await endCursor(run, ws, sh);
  await write(run, ws, sh, "if command -v less >/dev/null; then less pager.txt; else more pager.txt; fi");
  const pager = await readUntil(run, ws, sh, from, (o) => /^line 1$/m.test(o) && /^line 20$/m.test(o));
  expect(pager.output).not.toContain("line 200");
  expect(pager.output).not.toContain(ESC);
  await write(run, ws, sh, "q", false);
  await write(run, ws, sh, "echo after-pager");
  await readUntil(run, ws, sh, from, (o) => /^after-pager$/m.test(o));
  await close(run, ws, sh);
}

/** signal INT stops the foreground `sleep`, the prompt returns, nothing is left running. */
export async function interrupt(run: Run, ws: string): Promise<void> {
  const sh = await openShell(run, ws);
  await write(run, ws, sh, "sleep 1001");
  await readUntil(run, ws, sh, 0, (o) => o.includes("sleep 1001"));
  const probe = ["workspace", "exec", ws, "--json", "--", "pgrep", "-fx", "sleep 1001"];
  expect((await run(probe)).code).toBe(0); // the probe sees it while it runs
  const from = await endCursor(run, ws, sh);
  const sig = await run(["workspace", "shell", "signal", ws, sh, "--json"]);
  expect(sig.code).toBe(0);
  expect(sig.json.signal_name).toBe("INT");
  await write(run, ws, sh, "echo back-$((2+3))");
  await readUntil(run, ws, sh, from, (o) => /^back-5$/m.test(o));
  expect((await run(probe)).code).toBe(1);
  await close(run, ws, sh);
}

/** Reads with the returned cursors reassemble the whole output exactly, across many reads. */
export async function cursorsReassemble(run: Run, ws: string): Promise<void> {
  const sh = await openShell(run, ws);
  await write(run, ws, sh, "seq 1 3000; echo seq-$((1+2))-done");
  const whole = await readUntil(run, ws, sh, 0, (o) => o.includes("seq-3-done\r\n"), false);
  const end = whole.json.next_cursor;
  const parts: string[] = [];
  let cursor = 0;
  let reads = 0;
  while (cursor < end) {
    const r = await run([
      "workspace",
      "shell",
      "read",
      ws,
      sh,
      "--json",
      "--cursor",
      String(cursor),
      "--max-chars",
      "997",
    ]);
    expect(r.code).toBe(0);
    expect(r.json.cursor).toBe(cursor);
    expect(r.json.truncated).toBe(false);
    parts.push(r.json.output);
    cursor = r.json.next_cursor;
    reads++;
  }
  expect(reads).toBeGreaterThan(10);
  expect(parts.join("").slice(0, end)).toBe(whole.output.slice(0, end));
  expect(whole.output).toContain("\r\n2999\r\n3000\r\n");
  await close(run, ws, sh);
}

/** State kept between CLI processes, and a client killed -9 mid-read takes nothing with it. */
export async function survivesClients(run: Run, ws: string, home: string): Promise<void> {
  const sh = await openShell(run, ws);
  await write(run, ws, sh, "export MARK=kept-$((40+2)); cd /tmp");
  const waiting = Bun.spawn(
    [PYRO, "workspace", "shell", "read", ws, sh, "--wait-for-idle-ms", "600000", "--timeout-seconds", "600"],
    {
      env: { ...(process.env as Record<string, string>), PYRO_HOME: home },
      stdout: "ignore",
      stderr: "ignore",
    },
  );
  await write(run, ws, sh, "sleep 2; echo slept");
  await Bun.sleep(300);
  waiting.kill("SIGKILL");
  await waiting.exited;
  await write(run, ws, sh, "echo $MARK in $PWD");
  await readUntil(run, ws, sh, 0, (o) => /^kept-42 in \/tmp$/m.test(o) && /^slept$/m.test(o));
  const list = await run(["workspace", "shell", "list", ws, "--json"]);
  expect(list.json.shells.map((s: { shell_id: string }) => s.shell_id)).toContain(sh);
  await close(run, ws, sh);
}

/** Bad input: each a stable code and exit code; a closed shell is gone from list and status. */
export async function badInput(run: Run, ws: string): Promise<void> {
  const sh = await openShell(run, ws);
  const before = await run(["workspace", "status", ws, "--json"]);
  expect(before.json.shells).toBeGreaterThanOrEqual(1);
  const unknown = await run(["workspace", "shell", "read", ws, "sh_000000000000", "--json"]);
  expect([unknown.code, unknown.json.code]).toEqual([66, "SHELL_NOT_FOUND"]);
  const badSignal = await run(["workspace", "shell", "signal", ws, sh, "--signal", "USR9", "--json"]);
  expect([badSignal.code, badSignal.json.code]).toEqual([64, "INVALID_INPUT"]);
  const end = await endCursor(run, ws, sh);
  const atEnd = await run(["workspace", "shell", "read", ws, sh, "--cursor", String(end), "--json"]);
  expect(atEnd.code).toBe(0);
  const past = await run([
    "workspace",
    "shell",
    "read",
    ws,
    sh,
    "--cursor",
    String(end + 1_000_000),
    "--json",
  ]);
  expect([past.code, past.json.code]).toEqual([65, "OFFSET_OUT_OF_RANGE"]);
  const badCwd = await run(["workspace", "shell", "open", ws, "--cwd", "../..", "--json"]);
  expect([badCwd.code, badCwd.json.code]).toEqual([65, "PATH_OUTSIDE_WORKSPACE"]);
  await close(run, ws, sh);
  const closed = await run(["workspace", "shell", "write", ws, sh, "--input", "x", "--json"]);
  expect([closed.code, closed.json.code]).toEqual([65, "SHELL_CLOSED"]);
  const after = await run(["workspace", "status", ws, "--json"]);
  expect(after.json.shells).toBe(before.json.shells - 1);
  const list = await run(["workspace", "shell", "list", ws, "--json"]);
  expect(list.json.shells.map((s: { shell_id: string }) => s.shell_id)).not.toContain(sh);
}

/** resize: the PTY's size changes (stty reads it back) and shows in list; bad sizes, unknown and closed shells are refused. */
export async function resize(run: Run, ws: string): Promise<void> {
  const sh = await openShell(run, ws, ["--cols", "100", "--rows", "20"]);
  const sizeAfter = async (want: string) => {
    const from = await endCursor(run, ws, sh);
    await write(run, ws, sh, "stty size");
    await readUntil(run, ws, sh, from, (o) => new RegExp(`^${want}$`, "m").test(o));
  };
  await sizeAfter("20 100"); // the probe reads the size it was opened with
  const r = await run(["workspace", "shell", "resize", ws, sh, "--cols", "132", "--rows", "43", "--json"]);
  expect(r.code).toBe(0);
  expect([r.json.shell_id, r.json.cols, r.json.rows, r.json.state]).toEqual([sh, 132, 43, "running"]);
  await sizeAfter("43 132");
  const list = await run(["workspace", "shell", "list", ws, "--json"]);
  const entry = list.json.shells.find((s: { shell_id: string }) => s.shell_id === sh);
  expect([entry.cols, entry.rows]).toEqual([132, 43]);
  const tiny = await run(["workspace", "shell", "resize", ws, sh, "--cols", "1", "--rows", "43", "--json"]);
  expect([tiny.code, tiny.json.code]).toEqual([64, "INVALID_INPUT"]);
  const noRows = await run(["workspace", "shell", "resize", ws, sh, "--cols", "80", "--json"]);
  expect([noRows.code, noRows.json.code]).toEqual([64, "INVALID_INPUT"]);
  const unknown = await run([
    "workspace",
    "shell",
    "resize",
    ws,
    "sh_000000000000",
    "--cols",
    "80",
    "--rows",
    "24",
    "--json",
  ]);
  expect([unknown.code, unknown.json.code]).toEqual([66, "SHELL_NOT_FOUND"]);
  await close(run, ws, sh);
  const closed = await run([
    "workspace",
    "shell",
    "resize",
    ws,
    sh,
    "--cols",
    "80",
    "--rows",
    "24",
    "--json",
  ]);
  expect([closed.code, closed.json.code]).toEqual([65, "SHELL_CLOSED"]);
}

/** A shell is gone after reset: status counts none and its id is unknown. */
export async function goneAfterReset(run: Run, ws: string): Promise<void> {
  const sh = await openShell(run, ws);
  expect((await run(["workspace", "status", ws, "--json"])).json.shells).toBeGreaterThanOrEqual(1);
  expect((await run(["workspace", "reset", ws])).code).toBe(0);
  expect((await run(["workspace", "status", ws, "--json"])).json.shells).toBe(0);
  const r = await run(["workspace", "shell", "read", ws, sh, "--json"]);
  expect([r.code, r.json.code]).toEqual([66, "SHELL_NOT_FOUND"]);
}

/** A shell is gone after stop and start: status counts none and its id is unknown. */
export async function goneAfterStop(run: Run, ws: string): Promise<void> {
  const sh = await openShell(run, ws);
  expect((await run(["workspace", "status", ws, "--json"])).json.shells).toBeGreaterThanOrEqual(1);
  expect((await run(["workspace", "stop", ws])).code).toBe(0);
  expect((await run(["workspace", "start", ws])).code).toBe(0);
  expect((await run(["workspace", "status", ws, "--json"])).json.shells).toBe(0);
  const r = await run(["workspace", "shell", "read", ws, sh, "--json"]);
  expect([r.code, r.json.code]).toEqual([66, "SHELL_NOT_FOUND"]);
}

export async function close(run: Run, ws: string, sh: string): Promise<void> {
  const r = await run(["workspace", "shell", "close", ws, sh, "--json"]);
  expect(r.code).toBe(0);
  expect(r.json.state).toBe("closed");
}
