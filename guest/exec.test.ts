/**
 * exec through the real agent dispatcher: serveChannel on one end of an in-memory channel
 * pair, a client Connection on the other, commands run on this machine in a temp root.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { channelPair } from "../src/protocol/channels.ts";
import { type ClientStream, Connection } from "../src/protocol/connection.ts";
import { Channel } from "../src/protocol/frame.ts";
import { ExecResult } from "../src/protocol/messages.ts";
import { rejection } from "../src/protocol/testing.ts";
import { serveChannel } from "./server.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function agent() {
  const root = mkdtempSync(join(tmpdir(), "pyro-exec-test-"));
  const [serverSide, clientSide] = channelPair();
  const server = serveChannel(
    { root, guest: false, baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" } },
    serverSide,
  );
  const client = new Connection(clientSide);
  cleanups.push(() => {
    client.close();
    rmSync(root, { recursive: true, force: true });
  });
  return { root, server, client };
}

type ExecOutput = {
  result: Record<string, unknown>;
  stdout: string;
  stderr: string;
  stdoutBytes: number;
  started: Record<string, unknown>[];
  channels: Set<number>;
};

/** Collect everything an exec stream sends until its result. */
async function collect(s: ClientStream): Promise<ExecOutput> {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const started: Record<string, unknown>[] = [];
  const channels = new Set<number>();
  const pump = (async () => {
    for await (const e of s.events) {
      if (e.kind === "json") started.push(e.message);
      else {
        channels.add(e.channel);
        (e.channel === Channel.STDOUT ? out : err).push(e.bytes);
      }
    }
  })();
  const result = await s.done;
  await pump;
  const stdout = Buffer.concat(out);
  return {
    result,
    stdout: stdout.toString(),
    stderr: Buffer.concat(err).toString(),
    stdoutBytes: stdout.byteLength,
    started,
    channels,
  };
}

async function exec(client: Connection, req: Record<string, unknown>): Promise<ExecOutput> {
  return collect(client.open({ op: "exec", ...req }));
}

/**
 * Whether a process still runs. process.kill(pid, 0) alone is not enough here: a killed
 * child reparented to a PID 1 that does not reap (as in some containers) stays a zombie,
 * which kill(0) still reports; a zombie runs nothing, so it counts as gone.
 */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Poll for a condition that must become true (no timing is asserted; this only bounds a hang). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await Bun.sleep(5);
  }
  throw new Error(`still waiting for ${what}`);
}

/** Read stdout events until `count` lines arrived; returns them. */
async function readLines(s: ClientStream, count: number): Promise<string[]> {
  let text = "";
  const it = s.events[Symbol.asyncIterator]();
  while (text.split("\n").length - 1 < count) {
    const next = await it.next();
    if (next.done) throw new Error(`stream ended after ${JSON.stringify(text)}`);
    if (next.value.kind === "data" && next.value.channel === Channel.STDOUT)
      text += dec.decode(next.value.bytes);
  }
  return text.split("\n").slice(0, count);
}

/** The result as the client sees it (the frame's `type` stripped): exactly the schema's fields. */
const RESULT_KEYS = Object.keys(ExecResult.entries).sort();

describe("exec", () => {
  test("a command string runs under /bin/sh -c; stdout and stderr ride channels 1 and 2", async () => {
    const { client } = agent();
    const r = await exec(client, { command: "echo hello; echo oops >&2; echo world" });
    expect(r.stdout).toBe("hello\nworld\n");
    expect(r.stderr).toBe("oops\n");
    expect([...r.channels].sort()).toEqual([Channel.STDOUT, Channel.STDERR]);
    expect(Object.keys(r.result).sort()).toEqual(RESULT_KEYS);
    expect(r.result).toMatchObject({
      exit_code: 0,
      signal: null,
      timed_out: false,
      stdout_bytes: 12,
      stderr_bytes: 5,
      stdout_truncated: false,
      stderr_truncated: false,
    });
    expect(typeof r.result.duration_ms).toBe("number");
    expect(r.started).toHaveLength(1);
    expect(r.started[0]!.type).toBe("started");
    expect(Number.isInteger(r.started[0]!.pid)).toBe(true);
  });

  test("argv runs directly, without a shell", async () => {
    const { client } = agent();
    const r = await exec(client, { argv: ["printf", "%s|", "a b", "$HOME", "*"] });
    expect(r.stdout).toBe("a b|$HOME|*|");
    expect(r.result.exit_code).toBe(0);
  });

  test("exit codes come back as they are", async () => {
    const { client } = agent();
    for (const code of [0, 1, 2, 42, 126, 255]) {
      expect((await exec(client, { command: `exit ${code}` })).result.exit_code).toBe(code);
    }
    expect((await exec(client, { argv: ["false"] })).result.exit_code).toBe(1);
  });

  test("the command runs in the root with the base env plus the request's env", async () => {
    const { client, root } = agent();
    mkdirSync(join(root, "sub"));
    const r = await exec(client, { command: 'pwd; echo "$FOO|$PATH"', env: { FOO: "bar" } });
    expect(r.stdout).toBe(`${realpathSync(root)}\n${"bar"}|${process.env.PATH}\n`);
    for (const cwd of ["sub", "/workspace/sub", "./sub/../sub"]) {
      expect((await exec(client, { argv: ["pwd"], cwd })).stdout).toBe(
        `${realpathSync(join(root, "sub"))}\n`,
      );
    }
  });

  test("max_output_bytes caps each stream and flags *_truncated", async () => {
    const { client } = agent();
    const r = await exec(client, {
      command: "head -c 100000 /dev/zero; head -c 10 /dev/zero >&2",
      max_output_bytes: 1000,
    });
    expect(r.stdoutBytes).toBe(1000);
    expect(r.result).toMatchObject({
      exit_code: 0,
      stdout_bytes: 1000,
      stdout_truncated: true,
      stderr_bytes: 10,
      stderr_truncated: false,
    });
    const both = await exec(client, { command: "seq 1 10000; seq 1 10000 >&2", max_output_bytes: 7 });
    expect(both.stdout).toBe("1\n2\n3\n4");
    expect(both.stderr).toBe("1\n2\n3\n4");
    expect(both.result).toMatchObject({
      stdout_bytes: 7,
      stderr_bytes: 7,
      stdout_truncated: true,
      stderr_truncated: true,
    });
  });

  test("output of exactly max_output_bytes is not truncated; 0 drops everything", async () => {
    const { client } = agent();
    const exact = await exec(client, { command: "printf 12345", max_output_bytes: 5 });
    expect(exact.stdout).toBe("12345");
    expect(exact.result).toMatchObject({ stdout_bytes: 5, stdout_truncated: false });
    const none = await exec(client, { command: "echo hi", max_output_bytes: 0 });
    expect(none.stdout).toBe("");
    expect(none.result).toMatchObject({ stdout_bytes: 0, stdout_truncated: true, exit_code: 0 });
  });

  test("timeout_ms kills the whole process group: exit 124, timed_out, background children gone", async () => {
    const { client } = agent();
    const s = client.open({
      op: "exec",
      command: "sleep 100 & echo $!; echo $$; sleep 100",
      timeout_ms: 1500,
    });
    const [bg, shell] = (await readLines(s, 2)).map(Number);
    expect(bg).toBeGreaterThan(0);
    expect(shell).toBeGreaterThan(0);
    const r = await collect(s);
    expect(r.result).toMatchObject({ exit_code: 124, timed_out: true, signal: "SIGKILL" });
    await until(() => !running(bg!) && !running(shell!), "the timed-out process group to die");
  });

  test("output produced before a timeout is still returned", async () => {
    const { client } = agent();
    const r = await exec(client, { command: "echo before; sleep 100", timeout_ms: 1000 });
    expect(r.stdout).toBe("before\n");
    expect(r.result).toMatchObject({ exit_code: 124, timed_out: true, stdout_bytes: 7 });
  });

  test("stdin streaming: data frames then END reach the command", async () => {
    const { client } = agent();
    const s = client.open({ op: "exec", argv: ["cat"], stdin: true });
    s.sendData(enc.encode("line one\n"));
    s.sendData(enc.encode("line two\n"));
    s.endInput();
    const r = await collect(s);
    expect(r.stdout).toBe("line one\nline two\n");
    expect(r.result.exit_code).toBe(0);
  });

  test("stdin streaming of a large binary input (several frames)", async () => {
    const { client } = agent();
    const big = new Uint8Array(3 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 11)) & 0xff;
    const s = client.open({ op: "exec", command: "cat | sha256sum", stdin: true });
    s.sendData(big);
    s.endInput();
    const r = await collect(s);
    const want = new Bun.CryptoHasher("sha256").update(big).digest("hex");
    expect(r.stdout.split(" ")[0]).toBe(want);
  });

  test("without stdin: true the command reads EOF at once", async () => {
    const { client } = agent();
    const r = await exec(client, { command: "cat; echo done" });
    expect(r.stdout).toBe("done\n");
  });

  test("a nonexistent argv[0] is exit 127, not an error", async () => {
    const { client } = agent();
    const r = await exec(client, { argv: ["pyro-no-such-command-xyz", "arg"] });
    expect(r.result).toMatchObject({ exit_code: 127, timed_out: false, signal: null, stdout_bytes: 0 });
    expect(r.stderr).toContain("pyro-no-such-command-xyz");
    expect(r.result.stderr_bytes).toBe(enc.encode(r.stderr).byteLength);
    // through the shell, sh itself says 127
    expect((await exec(client, { command: "pyro-no-such-command-xyz" })).result.exit_code).toBe(127);
  });

  test("a signal control message (SIGTERM) ends a running command", async () => {
    const { client } = agent();
    const s = client.open({ op: "exec", command: "echo $$; sleep 100" });
    const [shell] = (await readLines(s, 1)).map(Number);
    s.sendJson({ op: "signal", signal: "SIGTERM" });
    const r = await collect(s);
    expect(r.result).toMatchObject({ exit_code: 143, signal: "SIGTERM", timed_out: false });
    await until(() => !running(shell!), "the signalled shell to die");
  });

  test("SIGINT and SIGKILL are delivered too; unknown signal names are ignored", async () => {
    const { client } = agent();
    for (const [signal, code] of [
      ["SIGKILL", 137],
      ["SIGINT", 130],
    ] as const) {
      const s = client.open({ op: "exec", argv: ["sleep", "100"] });
      const first = await s.events[Symbol.asyncIterator]().next();
      expect(first.value).toMatchObject({ kind: "json", message: { type: "started" } });
      s.sendJson({ op: "signal", signal: "SIGSTOP" }); // not in the list: ignored
      s.sendJson({ op: "signal", signal });
      const r = await collect(s);
      expect(r.result).toMatchObject({ exit_code: code, signal });
    }
  });

  test("the client going away kills a running command and its children", async () => {
    const { client, server } = agent();
    const s = client.open({ op: "exec", command: "sleep 100 & echo $!; echo $$; wait" });
    const [bg, shell] = (await readLines(s, 2)).map(Number);
    expect(running(bg!)).toBe(true);
    client.close();
    expect((await rejection(s.done)).code).toBe("GUEST_UNREACHABLE");
    await until(() => server.isClosed, "the server side to see the close");
    await until(() => !running(bg!) && !running(shell!), "the abandoned command to die");
  });

  test("cwd outside the root is PATH_OUTSIDE_WORKSPACE", async () => {
    const { client, root } = agent();
    const outside = mkdtempSync(join(tmpdir(), "pyro-exec-outside-"));
    cleanups.push(() => rmSync(outside, { recursive: true, force: true }));
    symlinkSync(outside, join(root, "escape"));
    symlinkSync("..", join(root, "up"));
    for (const cwd of ["/etc", "/", "..", "../x", "/workspace/..", "escape", "up", "/workspace/escape/sub"]) {
      const err = await rejection(client.open({ op: "exec", argv: ["pwd"], cwd }).done);
      expect(err.code).toBe("PATH_OUTSIDE_WORKSPACE");
      expect(err.message).not.toContain(root);
      expect(err.message).not.toContain(outside);
    }
  });

  test("invalid exec requests are INVALID_INPUT", async () => {
    const { client } = agent();
    for (const req of [
      { op: "exec" },
      { op: "exec", command: "true", argv: ["true"] },
      { op: "exec", argv: [] },
      { op: "exec", command: "true", timeout_ms: 0 },
      { op: "exec", command: "true", env: { "BAD-NAME": "x" } },
      { op: "exec", command: "true", shell: "bash" },
    ]) {
      expect((await rejection(client.open(req).done)).code).toBe("INVALID_INPUT");
    }
  });

  test("many concurrent execs on one connection keep their outputs apart", async () => {
    const { client } = agent();
    const runs = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        exec(client, { command: `echo out${i}; echo err${i} >&2; exit ${i}` }),
      ),
    );
    runs.forEach((r, i) => {
      expect(r.stdout).toBe(`out${i}\n`);
      expect(r.stderr).toBe(`err${i}\n`);
      expect(r.result.exit_code).toBe(i);
    });
  });
});
