/**
 * The agent keeps the protocol's promises: every op guest/server.ts dispatches is in
 * MESSAGE_TABLE and every op of the table is dispatched; and every op, driven through the
 * host's typed `call()` against the real dispatcher (temp /workspace and state directory),
 * returns a result that passes its result schema, in the shapes that matter (symlinks,
 * binary and truncated reads, each diff and patch status, a killed exec, ...).
 *
 * The agent does not re-check its own results at run time (the host checks every result
 * where it arrives): this test and the result checks in server.test.ts and fuzz.test.ts are
 * where a handler that drifts from its schema fails.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CallOptions, call, type RequestOf, type ResultOf } from "../src/protocol/call.ts";
import { channelPair } from "../src/protocol/channels.ts";
import { Connection } from "../src/protocol/connection.ts";
import { Channel } from "../src/protocol/frame.ts";
import { AGENT_OPS, type AgentOp } from "../src/protocol/messages.ts";
import { PROTOCOL_VERSION } from "../src/protocol/version.ts";
import { serveChannel } from "./server.ts";

describe("the dispatcher and the table name the same ops", () => {
  /** The `case "op":` labels of handle()'s switch in server.ts. */
  function dispatchedOps(): string[] {
    const text = readFileSync(join(import.meta.dir, "server.ts"), "utf8");
    const start = text.indexOf("switch (req.op)");
    expect(start).toBeGreaterThan(0);
    const body = text.slice(start, text.indexOf("\n}\n", start));
    return [...body.matchAll(/^\s*case "([^"]+)":/gm)].map((m) => m[1] as string);
  }

  test("the probe finds the cases (positive check)", () => {
    const ops = dispatchedOps();
    expect(ops).toContain("hello");
    expect(ops).toContain("diff");
    expect(new Set(ops).size).toBe(ops.length);
  });

  test("every dispatched op is in MESSAGE_TABLE and every table op is dispatched", () => {
    expect(dispatchedOps().sort()).toEqual([...AGENT_OPS].sort());
  });
});

describe("every op's result passes its schema (through the host's call())", () => {
  let root: string;
  let state: string;
  let client: Connection;
  let shutdowns = 0;
  const covered = new Set<AgentOp>();

  beforeAll(() => {
    const base = mkdtempSync(join(tmpdir(), "pyro-contract-"));
    root = join(base, "workspace");
    state = join(base, "state");
    mkdirSync(root);
    mkdirSync(state);
    const [serverSide, clientSide] = channelPair();
    serveChannel(
      {
        root,
        guest: false,
        stateDir: state,
        baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
        onShutdown: () => shutdowns++,
      },
      serverSide,
    );
    client = new Connection(clientSide);
  });
  afterAll(() => {
    client.close();
    rmSync(join(root, ".."), { recursive: true, force: true });
  });

  /** call() checks the result against its schema; record which ops were driven. */
  async function run<Op extends AgentOp>(
    request: RequestOf<Op> & { op: Op },
    opts: CallOptions = {},
  ): Promise<ResultOf<Op>> {
    const result = await call<Op>(client, request, opts);
    covered.add(request.op);
    return result;
  }
  const bytesOf = (s: string | Uint8Array) => (typeof s === "string" ? new TextEncoder().encode(s) : s);
  function sink(): { onEvent: CallOptions["onEvent"]; bytes: () => Buffer } {
    const parts: Uint8Array[] = [];
    return {
      onEvent: (e) => {
        if (e.kind === "data" && e.channel === Channel.STDOUT) parts.push(e.bytes);
      },
      bytes: () => Buffer.concat(parts),
    };
  }

  test("session: hello, ping, clock, info", async () => {
    const hello = await run({ op: "hello", protocol_version: PROTOCOL_VERSION, host_version: "test" });
    expect(hello.root).toBe("/workspace");
    // host compat is attached from the start; sys.attach is a no-op answering its boot id
    expect(hello.attached).toBe(true);
    const attached = await run({
      op: "sys.attach",
      unix_ms: Date.now(),
      entropy: Buffer.alloc(32, 1).toString("base64"),
      boot_id: crypto.randomUUID(),
      data_disk: true,
    });
    expect(attached).toEqual({ boot_id: hello.boot_id, attached_ms: 0 });
    expect((await run({ op: "ping" })).pong).toBe(true);
    expect((await run({ op: "clock.set", unix_ms: Date.now() })).set).toBe(false);
    const info = await run({ op: "info" });
    expect(info.guest).toBe(false);
    expect(info.disk?.total_bytes).toBeGreaterThan(0);
  });

  test("files: write, mkdir, stat (file, directory, symlink), list, read, move", async () => {
    expect((await run({ op: "fs.write", path: "a.txt" }, { input: bytesOf("one\ntwo\n") })).size_bytes).toBe(
      8,
    );
    expect((await run({ op: "fs.mkdir", path: "d/e", parents: true })).artifact_type).toBe("directory");
    await run({ op: "fs.write", path: "d/bin", mode: 0o755 }, { input: new Uint8Array([0, 255, 1, 2]) });
    symlinkSync("a.txt", join(root, "link"));
    const link = await run({ op: "fs.stat", path: "link" });
    expect(link).toMatchObject({ artifact_type: "symlink", link_target: "a.txt" });
    expect((await run({ op: "fs.stat", path: "d" })).artifact_type).toBe("directory");
    const list = await run({ op: "fs.list", path: "/workspace", recursive: true });
    expect(list.entries.map((e) => e.path)).toContain("/workspace/d/bin");
    expect((await run({ op: "fs.list", path: "d", max_entries: 1 })).truncated).toBe(true);

    const text = sink();
    const read = await run({ op: "fs.read", path: "a.txt" }, { onEvent: text.onEvent });
    expect(read).toMatchObject({ encoding_hint: "utf8", truncated: false, bytes: 8 });
    expect(text.bytes().toString()).toBe("one\ntwo\n");
    const bin = await run({ op: "fs.read", path: "d/bin", max_bytes: 2 }, { onEvent: sink().onEvent });
    expect(bin).toMatchObject({ encoding_hint: "binary", truncated: true, bytes: 2, size_bytes: 4 });

    const moved = await run({ op: "fs.move", from: "d/e", to: "d/f" });
    expect(moved.moved_from).toBe("/workspace/d/e");
  });

  test("exec: output, a timeout, exec.kill of a running command and of none", async () => {
    const out = sink();
    const r = await run({ op: "exec", command: "echo hi; echo err >&2; exit 3" }, { onEvent: out.onEvent });
    expect(r).toMatchObject({
      exit_code: 3,
      signal: null,
      timed_out: false,
      stdout_bytes: 3,
      stderr_bytes: 4,
    });
    const t = await run({ op: "exec", argv: ["sleep", "5"], timeout_ms: 100 });
    expect(t).toMatchObject({ timed_out: true, exit_code: 124 });

    let pid = 0;
    const started = new Promise<void>((res) => {
      void run(
        { op: "exec", command: "sleep 30" },
        {
          onEvent: (e) => {
            if (e.kind === "json" && e.message.type === "started") {
              pid = e.message.pid as number;
              res();
            }
          },
        },
      ).then((killed) => expect(killed.signal).toBe("SIGKILL"));
    });
    await started;
    expect((await run({ op: "exec.kill", pid })).killed).toBe(true);
    expect((await run({ op: "exec.kill", pid: 0x7ffffff0 })).killed).toBe(false);
  });

  test("baseline, diff (every status), patch (every status)", async () => {
    writeFileSync(join(root, "gone.txt"), "bye\n");
    writeFileSync(join(root, "mode.sh"), "#!/bin/sh\n");
    writeFileSync(join(root, "blob"), new Uint8Array([0, 1, 2]));
    const base = await run({ op: "baseline.capture" });
    expect(base.files).toBeGreaterThan(0);
    expect(base.commit).toMatch(/^[0-9a-f]{40}$/);

    writeFileSync(join(root, "a.txt"), "one\nTWO\n");
    writeFileSync(join(root, "new.txt"), "new\n");
    rmSync(join(root, "gone.txt"));
    chmodSync(join(root, "mode.sh"), 0o755);
    writeFileSync(join(root, "blob"), new Uint8Array([0, 9, 9]));
    rmSync(join(root, "link"));
    writeFileSync(join(root, "link"), "a file where a symlink was\n");
    const patch = sink();
    const diff = await run({ op: "diff" }, { onEvent: patch.onEvent });
    const statuses = new Set(diff.files.map((f) => f.status));
    for (const s of ["added", "modified", "deleted", "mode_changed", "type_changed"] as const) {
      expect(statuses).toContain(s);
    }
    expect(diff.files.some((f) => f.binary)).toBe(true);
    expect(patch.bytes().byteLength).toBe(diff.patch_bytes);
    const cut = await run({ op: "diff", max_bytes: 10 }, { onEvent: sink().onEvent });
    expect(cut.truncated).toBe(true);

    const p = [
      "--- a/a.txt",
      "+++ b/a.txt",
      "@@ -1,2 +1,2 @@",
      " one",
      "-TWO",
      "+two",
      "diff --git a/new.txt b/renamed.txt",
      "similarity index 100%",
      "rename from new.txt",
      "rename to renamed.txt",
      "diff --git a/added.txt b/added.txt",
      "new file mode 100644",
      "--- /dev/null",
      "+++ b/added.txt",
      "@@ -0,0 +1 @@",
      "+added",
      "diff --git a/mode.sh b/mode.sh",
      "deleted file mode 100755",
      "--- a/mode.sh",
      "+++ /dev/null",
      "@@ -1 +0,0 @@",
      "-#!/bin/sh",
      "",
    ].join("\n");
    const applied = await run({ op: "patch.apply" }, { input: bytesOf(p) });
    expect(new Set(applied.files.map((f) => f.status))).toEqual(
      new Set(["added", "modified", "deleted", "renamed"]),
    );
    expect(applied.files.find((f) => f.status === "renamed")?.from).toBe("new.txt");
    expect(
      (await run({ op: "patch.apply", patch: "--- /dev/null\n+++ b/inline.txt\n@@ -0,0 +1 @@\n+x\n" }))
        .hunks_applied,
    ).toBe(1);
  });

  test("archives: export a directory, import it elsewhere, remove", async () => {
    const tar = sink();
    const exported = await run({ op: "archive.export", path: "d" }, { onEvent: tar.onEvent });
    expect(exported.bytes).toBe(tar.bytes().byteLength);
    const imported = await run({ op: "archive.import", dest: "copy" }, { input: tar.bytes() });
    expect(imported).toMatchObject({ path: "/workspace/copy", files: 1, directories: 2 });
    const removed = await run({ op: "fs.remove", path: "copy", recursive: true });
    expect(removed).toEqual({ path: "/workspace/copy", artifact_type: "directory", removed: true });
  });

  test("shells: open (started event, output, result), write, resize, signal, close", async () => {
    const shell_id = "sh_00000000c0de";
    let started: Record<string, unknown> | null = null;
    let output = "";
    const ended = run(
      { op: "shell.open", shell_id, cols: 90, rows: 20 },
      {
        onEvent: (e) => {
          if (e.kind === "json") started = e.message;
          else output += new TextDecoder().decode(e.bytes);
        },
      },
    );
    const until = async (re: RegExp) => {
      for (let i = 0; i < 200 && !re.test(output); i++) await Bun.sleep(25);
      expect(output).toMatch(re);
    };
    for (let i = 0; i < 200 && !started; i++) await Bun.sleep(25);
    expect((await run({ op: "shell.write", shell_id, input: "stty size; echo $((6*7))\n" })).bytes).toBe(25);
    await until(/20 90[\s\S]*42/);
    expect(started).toMatchObject({ type: "started", cwd: "/workspace" });
    expect(await run({ op: "shell.resize", shell_id, cols: 100, rows: 10 })).toEqual({ cols: 100, rows: 10 });
    expect((await run({ op: "shell.signal", shell_id, signal: "SIGINT" })).pgid).toBeGreaterThan(1);
    expect(await run({ op: "shell.close", shell_id })).toEqual({ closed: true });
    const result = await ended;
    expect(result.exit_code !== null || result.signal !== null).toBe(true);
  });

  test("services: start (started, ready by a file probe, output), stop (TERM to the group)", async () => {
    const events: Array<Record<string, unknown>> = [];
    let output = "";
    const ended = run(
      {
        op: "service.start",
        service_name: "web",
        command: "echo up; touch ready; exec sleep 30",
        readiness: { type: "file", path: "ready" },
        ready_timeout_ms: 10_000,
        ready_interval_ms: 20,
        stop_grace_ms: 1000,
      },
      {
        onEvent: (e) => {
          if (e.kind === "json") events.push(e.message);
          else output += new TextDecoder().decode(e.bytes);
        },
      },
    );
    for (let i = 0; i < 400 && !events.some((e) => e.type === "ready"); i++) await Bun.sleep(25);
    expect(events.map((e) => e.type)).toEqual(["started", "ready"]);
    expect(await run({ op: "service.stop", service_name: "web", grace_ms: 1000 })).toEqual({ stopped: true });
    expect(await ended).toEqual({ exit_code: null, signal: "SIGTERM", ready: true });
    expect(output).toBe("up\n");
    expect(await run({ op: "service.stop", service_name: "web", grace_ms: 10 })).toEqual({ stopped: false });
  });

  test("fs.freeze is refused outside a guest; fs.thaw with nothing frozen says so", async () => {
    // A freeze needs the guest's data disk (guest/freeze.ts); its result's schema is checked
    // by call() in the real-guest snapshot tests (test/snapshot-guest.test.ts).
    await expect(call(client, { op: "fs.freeze", timeout_ms: 1000 })).rejects.toMatchObject({
      code: "INVALID_INPUT",
    });
    covered.add("fs.freeze");
    expect(await run({ op: "fs.thaw" })).toEqual({ thawed: false });
  });

  test("secrets: secrets.set, then exec and shell.open take values by name (secret_env)", async () => {
    expect(await run({ op: "secrets.set", secrets: [{ name: "TOKEN", value: "s3cr3t-value" }] })).toEqual({
      count: 1,
    });
    let output = "";
    const res = await run(
      { op: "exec", command: 'printf %s "$T"', secret_env: { TOKEN: "T" } },
      {
        onEvent: (e) => {
          if (e.kind === "data") output += new TextDecoder().decode(e.bytes);
        },
      },
    );
    expect(res.exit_code).toBe(0);
    expect(output).toBe("s3cr3t-value");
    await expect(
      call(client, { op: "exec", command: "true", secret_env: { NOPE: "N" } }),
    ).rejects.toMatchObject({
      code: "SECRET_NOT_FOUND",
    });
    await expect(
      call(client, { op: "shell.open", shell_id: "sh_00000000000f", secret_env: { NOPE: "N" } }),
    ).rejects.toMatchObject({ code: "SECRET_NOT_FOUND" });
    expect(await run({ op: "secrets.set", secrets: [] })).toEqual({ count: 0 });
  });

  test("net.connect: carries a connection both ways (ack and eof events); a refusal is CONNECTION_REFUSED", async () => {
    // an echo server that answers after the client's FIN, so both half-closes are exercised
    const server = Bun.listen<{ got: string }>({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      socket: {
        open: (s) => {
          s.data = { got: "" };
        },
        data: (s, b) => {
          s.data.got += b.toString();
        },
        end: (s) => {
          s.write(`echo:${s.data.got}`);
          s.end();
        },
      },
    });
    const out = sink();
    const events: Array<Record<string, unknown>> = [];
    const r = await run(
      { op: "net.connect", port: server.port },
      {
        input: bytesOf("hello"),
        onEvent: (e) => {
          out.onEvent?.(e);
          if (e.kind === "json") events.push(e.message);
        },
      },
    );
    server.stop(true);
    expect(out.bytes().toString()).toBe("echo:hello");
    expect(r).toEqual({ bytes_in: 5, bytes_out: 10, reset: false });
    expect(events).toContainEqual({ type: "ack", bytes: 5 });
    expect(events).toContainEqual({ type: "eof" });
    // the same port, now closed: refused
    await expect(call(client, { op: "net.connect", port: server.port })).rejects.toMatchObject({
      code: "CONNECTION_REFUSED",
    });
  });

  test("kept sessions: sys.keep, the connection closes, a new one adopts (shell, service, exec); sys.release ends the rest", async () => {
    const agentOpts = {
      root,
      guest: false,
      stateDir: state,
      baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    };
    const connect = () => {
      const [serverSide, clientSide] = channelPair();
      serveChannel(agentOpts, serverSide);
      return new Connection(clientSide);
    };
    const drive = async <Op extends AgentOp>(
      conn: Connection,
      request: RequestOf<Op> & { op: Op },
      opts: CallOptions = {},
    ): Promise<ResultOf<Op>> => {
      const r = await call<Op>(conn, request, opts);
      covered.add(request.op);
      return r;
    };
    const groupAlive = (pid: number) => {
      try {
        process.kill(-pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    const text = (parts: Uint8Array[]) => Buffer.concat(parts).toString();
    const a = connect();
    const shellOut: Uint8Array[] = [];
    const shell_id = "sh_0000000000a1";
    void call(
      a,
      { op: "shell.open", shell_id },
      { onEvent: (e) => e.kind === "data" && shellOut.push(e.bytes) },
    ).catch(() => {});
    const execOut: Uint8Array[] = [];
    let execPid = 0;
    let otherPid = 0;
    const onExec = (e: Parameters<NonNullable<CallOptions["onEvent"]>>[0]) => {
      if (e.kind === "json" && typeof e.message.pid === "number") execPid = e.message.pid;
      else if (e.kind === "data" && e.channel === Channel.STDOUT) execOut.push(e.bytes);
    };
    void call(
      a,
      { op: "exec", command: "i=0; while [ $i -lt 30 ]; do echo n$i; i=$((i+1)); sleep 0.05; done" },
      { onEvent: onExec },
    ).catch(() => {});
    // not kept: ends with the connection, as always
    void call(
      a,
      { op: "exec", command: "exec sleep 30" },
      {
        onEvent: (e) => {
          if (e.kind === "json" && typeof e.message.pid === "number") otherPid = e.message.pid;
        },
      },
    ).catch(() => {});
    const svcEvents: string[] = [];
    void call(
      a,
      {
        op: "service.start",
        service_name: "kept",
        command: "touch kept.ready; exec sleep 30",
        readiness: { type: "file", path: "kept.ready" },
        ready_timeout_ms: 10_000,
        ready_interval_ms: 20,
        stop_grace_ms: 1000,
      },
      { onEvent: (e) => e.kind === "json" && svcEvents.push(String(e.message.type)) },
    ).catch(() => {});
    for (let i = 0; i < 400 && !(execPid && otherPid && svcEvents.includes("ready")); i++)
      await Bun.sleep(25);
    expect(svcEvents).toEqual(["started", "ready"]);
    expect(
      await drive(a, {
        op: "sys.keep",
        shell_ids: [shell_id],
        service_names: ["kept"],
        exec_pids: [execPid],
      }),
    ).toEqual({ kept: 3 });
    a.close();
    await Bun.sleep(300);
    // the probe works: the exec not kept died with its connection; the kept one runs on
    expect(groupAlive(otherPid)).toBe(false);
    expect(groupAlive(execPid)).toBe(true);

    const b = connect();
    const adoptedShell: Uint8Array[] = [];
    const shellEvents: Array<Record<string, unknown>> = [];
    const shellEnd = drive(
      b,
      { op: "shell.adopt", shell_id },
      {
        onEvent: (e) => (e.kind === "json" ? shellEvents.push(e.message) : adoptedShell.push(e.bytes)),
      },
    );
    for (let i = 0; i < 200 && !shellEvents.length; i++) await Bun.sleep(10);
    expect(shellEvents[0]).toMatchObject({ type: "adopted", dropped_bytes: 0, ended: false });
    await call(b, { op: "shell.write", shell_id, input: "echo $((6*7))\n" });
    for (let i = 0; i < 200 && !text(adoptedShell).includes("42"); i++) await Bun.sleep(25);
    expect(text(adoptedShell)).toContain("42");
    await call(b, { op: "shell.close", shell_id });
    await shellEnd;

    const execResult = await drive(b, { op: "exec.adopt", pid: execPid }, { onEvent: onExec });
    expect(execResult.exit_code).toBe(0);
    // the whole output, before and after the close, once and in order
    expect(text(execOut)).toBe(Array.from({ length: 30 }, (_, i) => `n${i}\n`).join(""));

    const svcEnd = drive(b, { op: "service.adopt", service_name: "kept" });
    for (let i = 0; i < 50; i++) await Bun.sleep(10);
    expect(await call(b, { op: "service.stop", service_name: "kept", grace_ms: 1000 })).toEqual({
      stopped: true,
    });
    expect(await svcEnd).toEqual({ exit_code: null, signal: "SIGTERM", ready: true });

    await expect(call(b, { op: "exec.adopt", pid: execPid })).rejects.toMatchObject({
      code: "SESSION_NOT_FOUND",
    });

    // kept but never adopted: sys.release ends it
    const c = connect();
    let lonePid = 0;
    void call(
      c,
      { op: "exec", command: "exec sleep 30" },
      {
        onEvent: (e) => {
          if (e.kind === "json" && typeof e.message.pid === "number") lonePid = e.message.pid;
        },
      },
    ).catch(() => {});
    for (let i = 0; i < 200 && !lonePid; i++) await Bun.sleep(10);
    expect(
      (await call(c, { op: "sys.keep", shell_ids: [], service_names: [], exec_pids: [lonePid] })).kept,
    ).toBe(1);
    c.close();
    await Bun.sleep(200);
    expect(groupAlive(lonePid)).toBe(true);
    expect(await drive(b, { op: "sys.release" })).toEqual({ ended: 1 });
    for (let i = 0; i < 100 && groupAlive(lonePid); i++) await Bun.sleep(20);
    expect(groupAlive(lonePid)).toBe(false);
    b.close();
  });

  test("shutdown, and every op of the table was driven", async () => {
    expect((await run({ op: "shutdown" })).shutting_down).toBe(true);
    await Bun.sleep(100);
    expect(shutdowns).toBe(1);
    expect([...covered].sort()).toEqual([...AGENT_OPS].sort());
  });
});
