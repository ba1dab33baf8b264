/**
 * Detached-exec cases shared by the host-compat test (test/detached.test.ts) and the real
 * guest test (test/detached-guest.test.ts): each drives the compiled CLI against a started
 * workspace and asserts what the public contract says (docs/public-contract.md, "Detached exec").
 */
import { expect } from "bun:test";
import { PYRO, pyro } from "./helpers.ts";

const SEQ_LINES = 500_000;

/** `exec-read` from offset 0 to eof in `maxBytes` steps: the whole stream, and how many reads it took. */
export async function readAll(
  home: string,
  ws: string,
  execId: string,
  stream: "stdout" | "stderr",
  maxBytes: number,
): Promise<{ text: string; reads: number }> {
  const parts: string[] = [];
  let offset = 0;
  for (let reads = 1; ; reads++) {
    const r = await pyro(
      [
        "workspace",
        "exec-read",
        ws,
        execId,
        "--stream",
        stream,
        "--offset",
        String(offset),
        "--max-bytes",
        String(maxBytes),
        "--json",
      ],
      { home },
    );
    expect(r.code).toBe(0);
    expect(r.json.offset).toBe(offset);
    expect(r.json.encoding).toBe("utf8");
    parts.push(r.json.data);
    if (r.json.eof) return { text: parts.join(""), reads };
    expect(r.json.next_offset).toBeGreaterThan(offset);
    offset = r.json.next_offset;
  }
}

/** Start a detached exec from a CLI process that is killed -9 right after it sent the start; retry with the key. */
async function startThenKillClient(home: string, ws: string, key: string, argv: string[]): Promise<string> {
  const args = ["workspace", "exec", ws, "--detach", "--idempotency-key", key, "--json", "--", ...argv];
  const first = Bun.spawn([PYRO, ...args], {
    env: { ...(process.env as Record<string, string>), PYRO_HOME: home },
    cwd: process.env.PYRO_TEST_TMP,
    stdout: "pipe",
    stderr: "pipe",
  });
  // kill -9 as soon as the start is under way: before or after the supervisor answered
  await Bun.sleep(150);
  first.kill("SIGKILL");
  await first.exited;
  // the retry names the same exec if the first start got through, else starts it now: once either way
  const retry = await pyro(args, { home });
  expect(retry.code).toBe(0);
  expect(retry.json.exec_id).toMatch(/^ex_[0-9a-f]{12}$/);
  expect(retry.json.idempotency_key).toBe(key);
  return retry.json.exec_id;
}

/**
 * seq 1 500000 detached, its starting CLI killed -9; exec-wait gives exit 0; offset reads
 * reassemble exactly the 500,000 lines; the command ran once (a counter file in /workspace
 * shows 1), also after a third start with the same key.
 */
export async function seqSurvivesItsClient(home: string, ws: string): Promise<void> {
  const argv = ["sh", "-c", `echo run >> counter; seq 1 ${SEQ_LINES}`];
  const execId = await startThenKillClient(home, ws, "seq-once", argv);

  const waited = await pyro(["workspace", "exec-wait", ws, execId, "--timeout-seconds", "300", "--json"], {
    home,
  });
  expect(waited.code).toBe(0);
  expect(waited.json.state).toBe("exited");
  expect(waited.json.exit_code).toBe(0);
  expect(waited.json.timed_out).toBe(false);
  expect(waited.json.duration_ms).toBeGreaterThanOrEqual(0);
  expect(waited.json.ended_at).toEqual(expect.any(String));

  const want = `${Array.from({ length: SEQ_LINES }, (_, i) => i + 1).join("\n")}\n`;
  expect(waited.json.stdout_bytes).toBe(want.length);
  const { text, reads } = await readAll(home, ws, execId, "stdout", 1024 * 1024);
  expect(reads).toBeGreaterThan(3); // reassembled across several offset reads
  expect(text.split("\n").length - 1).toBe(SEQ_LINES);
  expect(text).toBe(want);

  const again = await pyro(
    ["workspace", "exec", ws, "--detach", "--idempotency-key", "seq-once", "--json", "--", ...argv],
    { home },
  );
  expect(again.json.exec_id).toBe(execId);
  expect(again.json.reused).toBe(true);
  expect(again.json.state).toBe("exited");
  const counter = await pyro(["workspace", "exec", ws, "--json", "--", "cat", "counter"], { home });
  expect(counter.json.stdout).toBe("run\n");
}

/** A detached command still running when its workspace stops ends `lost`, with the reason kept. */
export async function runningAtStopIsRecorded(home: string, ws: string): Promise<string> {
  const started = await pyro(["workspace", "exec", ws, "--detach", "--json", "--", "sleep", "1000"], {
    home,
  });
  expect(started.code).toBe(0);
  expect(started.json.state).toBe("running");
  const execId = started.json.exec_id as string;
  // positive probe first: while the workspace runs, the exec is running
  const before = await pyro(["workspace", "exec-wait", ws, execId, "--timeout-seconds", "0", "--json"], {
    home,
  });
  expect(before.code).toBe(75);
  expect(before.json.state).toBe("running");

  expect((await pyro(["workspace", "stop", ws], { home })).code).toBe(0);
  const after = await pyro(["workspace", "exec-wait", ws, execId, "--json"], { home });
  expect(after.code).toBe(70);
  expect(after.json.state).toBe("lost");
  expect(after.json.exit_code).toBeNull();
  expect(after.json.end_reason).toContain("the workspace stopped while the command was running");
  expect(after.json.end_reason).toContain("stopped by request");
  expect(after.json.ended_at).toEqual(expect.any(String));
  return execId;
}
