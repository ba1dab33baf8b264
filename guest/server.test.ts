/**
 * The agent's dispatcher end to end: serveChannel on one end of an in-memory channel pair,
 * a client Connection on the other, a temp directory as /workspace.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseResult } from "../src/protocol/call.ts";
import { channelPair } from "../src/protocol/channels.ts";
import { type ClientStream, Connection } from "../src/protocol/connection.ts";
import { ERROR_CODES, PyroError } from "../src/protocol/errors.ts";
import {
  Channel,
  encodeFrame,
  encodeJsonFrame,
  Flag,
  FrameDecoder,
  makeFlags,
} from "../src/protocol/frame.ts";
import { type AgentOp, MESSAGE_TABLE } from "../src/protocol/messages.ts";
import { PROTOCOL_VERSION, PYRO_VERSION } from "../src/protocol/version.ts";
import { type AgentOptions, serveChannel } from "./server.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function agent(extra: Partial<AgentOptions> = {}) {
  const root = mkdtempSync(join(tmpdir(), "pyro-server-test-"));
  const opts: AgentOptions = {
    root,
    guest: false,
    baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    ...extra,
  };
  const [serverSide, clientSide] = channelPair();
  const server = serveChannel(opts, serverSide);
  const client = new Connection(clientSide);
  cleanups.push(() => {
    client.close();
    rmSync(root, { recursive: true, force: true });
  });
  return { root, opts, server, client, clientSide };
}

/** Send a request (and optional input), return the result and what came on channel 1. */
async function call(
  client: Connection,
  req: Record<string, unknown>,
  input?: Uint8Array,
): Promise<{ result: Record<string, unknown>; out: Uint8Array; json: Record<string, unknown>[] }> {
  const s: ClientStream = client.open(req);
  const parts: Uint8Array[] = [];
  const json: Record<string, unknown>[] = [];
  const pump = (async () => {
    for await (const e of s.events) {
      if (e.kind === "json") json.push(e.message);
      else if (e.channel === Channel.STDOUT) parts.push(e.bytes);
    }
  })();
  if (input) {
    s.sendData(input);
    s.endInput();
  }
  const result = await s.done;
  await pump;
  // every result a test sees passes its op's result schema (what the host checks)
  if (typeof req.op === "string" && Object.hasOwn(MESSAGE_TABLE, req.op))
    parseResult(req.op as AgentOp, result);
  return { result, out: new Uint8Array(Buffer.concat(parts)), json };
}

async function failure(
  client: Connection,
  req: Record<string, unknown>,
  input?: Uint8Array,
): Promise<PyroError> {
  try {
    await call(client, req, input);
  } catch (err) {
    expect(err).toBeInstanceOf(PyroError);
    return err as PyroError;
  }
  throw new Error(`expected ${JSON.stringify(req)} to fail`);
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await Bun.sleep(5);
  }
  throw new Error(`still waiting for ${what}`);
}

describe("hello", () => {
  test("the right protocol version gets the agent's identity", async () => {
    const { client } = agent();
    const { result } = await call(client, {
      op: "hello",
      protocol_version: PROTOCOL_VERSION,
      host_version: "test",
    });
    expect(result).toMatchObject({
      protocol_version: PROTOCOL_VERSION,
      agent_version: PYRO_VERSION,
      pid1: false,
      root: "/workspace",
    });
    expect(typeof result.kernel).toBe("string");
    expect((result.kernel as string).length).toBeGreaterThan(0);
    expect(typeof result.boot_id).toBe("string");
  });

  test("a guest agent is detached until sys.attach: workspace requests are INVALID_STATE, a second attach too", async () => {
    // guest: true without attaching (attaching would mount on this host): only the refusals
    const { client, opts, root } = agent({ guest: true });
    const hello = await call(client, { op: "hello", protocol_version: PROTOCOL_VERSION, host_version: "t" });
    expect(hello.result.attached).toBe(false);
    expect((await call(client, { op: "ping" })).result.pong).toBe(true);
    writeFileSync(join(root, "a.txt"), "x");
    for (const req of [
      { op: "exec", command: "echo ran" },
      { op: "fs.read", path: "a.txt" },
      { op: "fs.list", path: "." },
      { op: "archive.export", path: "." },
      { op: "secrets.set", secrets: [{ name: "T", value: "v" }] },
    ]) {
      const err = await failure(client, req);
      expect(err.code).toBe("INVALID_STATE");
      expect(err.message).toContain("not attached");
    }
    // once attached (as sys.attach leaves it), the same requests run and a second attach is refused
    opts.attachedBootId = "0b6f9c7e-2d4a-4c1b-9e8f-3a5d7c9b1e2f";
    const after = await call(client, { op: "hello", protocol_version: PROTOCOL_VERSION, host_version: "t" });
    expect(after.result).toMatchObject({ attached: true, boot_id: opts.attachedBootId });
    expect(dec.decode((await call(client, { op: "fs.read", path: "a.txt" })).out)).toBe("x");
    const again = await failure(client, {
      op: "sys.attach",
      unix_ms: Date.now(),
      entropy: Buffer.alloc(32, 1).toString("base64"),
      boot_id: crypto.randomUUID(),
      data_disk: true,
    });
    expect(again.code).toBe("INVALID_STATE");
    expect(again.message).toContain("already attached");
  });

  test("a wrong protocol_version is AGENT_VERSION_MISMATCH with the agent's versions", async () => {
    const { client } = agent();
    for (const version of [0, PROTOCOL_VERSION + 1, 999]) {
      const err = await failure(client, { op: "hello", protocol_version: version, host_version: "test" });
      expect(err.code).toBe("AGENT_VERSION_MISMATCH");
      expect(err.details).toEqual({ agent_version: PYRO_VERSION, protocol_version: PROTOCOL_VERSION });
    }
  });

  test("config.env joins the base env of later execs", async () => {
    const { client, opts } = agent();
    await call(client, {
      op: "hello",
      protocol_version: PROTOCOL_VERSION,
      host_version: "t",
      config: { env: { PYRO_TEST_VAR: "from-hello" }, hostname: "h", clock_unix_ms: Date.now() },
    });
    expect(opts.baseEnv.PYRO_TEST_VAR).toBe("from-hello");
    const { out } = await call(client, { op: "exec", command: 'printf %s "$PYRO_TEST_VAR"' });
    expect(dec.decode(out)).toBe("from-hello");
  });
});

describe("ping, info, shutdown", () => {
  test("ping → pong", async () => {
    const { client } = agent();
    expect((await call(client, { op: "ping" })).result).toEqual({ pong: true });
  });

  test("info returns kernel, memory and disk", async () => {
    const { client } = agent();
    const { result } = await call(client, { op: "info" });
    expect(result).toMatchObject({
      agent_version: PYRO_VERSION,
      protocol_version: PROTOCOL_VERSION,
      guest: false,
    });
    expect(typeof result.kernel).toBe("string");
    expect((result.kernel as string).length).toBeGreaterThan(0);
    const memory = result.memory as { total_bytes: number; available_bytes: number };
    expect(memory.total_bytes).toBeGreaterThan(0);
    expect(memory.available_bytes).toBeGreaterThanOrEqual(0);
    expect(memory.available_bytes).toBeLessThanOrEqual(memory.total_bytes);
    const disk = result.disk as { total_bytes: number; free_bytes: number };
    expect(disk.total_bytes).toBeGreaterThan(0);
    expect(disk.free_bytes).toBeLessThanOrEqual(disk.total_bytes);
    expect(result.agent_rss_bytes).toBeGreaterThan(0);
    expect(typeof result.hostname).toBe("string");
  });

  test("shutdown answers first, then calls onShutdown (host compat)", async () => {
    let called = 0;
    const { client } = agent({ onShutdown: () => called++ });
    expect((await call(client, { op: "shutdown" })).result).toEqual({ shutting_down: true });
    await until(() => called === 1, "onShutdown");
  });
});

describe("request validation", () => {
  test("an unknown op is INVALID_INPUT", async () => {
    const { client } = agent();
    for (const req of [
      { op: "nope" },
      { op: "signal", signal: "SIGTERM" },
      {},
      { op: 1 },
      { command: "true" },
    ]) {
      const err = await failure(client, req);
      expect(err.code).toBe("INVALID_INPUT");
    }
  });

  test("unknown fields, wrong types and missing fields are INVALID_INPUT naming the field", async () => {
    const { client } = agent();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ op: "ping", extra: 1 }, "extra"],
      [{ op: "fs.read", path: 3 }, "path"],
      [{ op: "fs.read" }, "path"],
      [{ op: "fs.read", path: "" }, "path"],
      [{ op: "fs.read", path: "a", max_bytes: -1 }, "max_bytes"],
      [{ op: "hello", protocol_version: "1", host_version: "x" }, "protocol_version"],
    ];
    for (const [req, field] of cases) {
      const err = await failure(client, req);
      expect(err.code).toBe("INVALID_INPUT");
      expect(err.message).toContain(field);
    }
  });

  test("a bad request fails only its own stream", async () => {
    const { client, server } = agent();
    const [bad, good] = await Promise.allSettled([
      call(client, { op: "nope" }),
      call(client, { op: "ping" }),
    ]);
    expect(bad.status).toBe("rejected");
    expect(good.status).toBe("fulfilled");
    expect(server.isClosed).toBe(false);
  });

  test("error frames carry a known code and end the stream", async () => {
    const { clientSide } = agent();
    const frames: ReturnType<FrameDecoder["push"]> = [];
    const d = new FrameDecoder();
    clientSide.onData((b) => frames.push(...d.push(b)));
    clientSide.write(encodeJsonFrame(11, { op: "nope" }, true));
    await until(() => frames.length > 0, "the error frame");
    expect(frames).toHaveLength(1);
    expect(frames[0]!.stream).toBe(11);
    expect(frames[0]!.flags).toBe(Flag.JSON | Flag.END);
    const msg = JSON.parse(dec.decode(frames[0]!.payload));
    expect(msg.type).toBe("error");
    expect(ERROR_CODES).toContain(msg.code);
  });

  test("a framing error closes the connection", async () => {
    const { clientSide, server } = agent();
    clientSide.write(encodeFrame({ stream: 1, flags: Flag.JSON, payload: enc.encode("not json") }));
    await until(() => server.isClosed, "the server to drop the connection");
  });

  test("data frames for streams that were never opened are ignored", async () => {
    const { client, clientSide, server } = agent();
    clientSide.write(encodeFrame({ stream: 500, flags: makeFlags({ end: true }), payload: enc.encode("x") }));
    expect((await call(client, { op: "ping" })).result.pong).toBe(true);
    expect(server.isClosed).toBe(false);
  });
});

describe("fs", () => {
  test("fs.write then fs.read round trip (binary, parents created)", async () => {
    const { client, root } = agent();
    const content = new Uint8Array(200_000);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7) & 0xff;
    const w = await call(client, { op: "fs.write", path: "/workspace/dir/sub/f.bin" }, content);
    expect(w.result).toMatchObject({
      path: "/workspace/dir/sub/f.bin",
      artifact_type: "file",
      size_bytes: 200_000,
    });
    expect(Buffer.from(readFileSync(join(root, "dir/sub/f.bin"))).equals(Buffer.from(content))).toBe(true);
    const r = await call(client, { op: "fs.read", path: "dir/sub/f.bin", max_bytes: 1_000_000 });
    expect(r.result).toMatchObject({
      path: "/workspace/dir/sub/f.bin",
      size_bytes: 200_000,
      bytes: 200_000,
      truncated: false,
    });
    expect(r.result.content).toBeUndefined();
    expect(Buffer.from(r.out).equals(Buffer.from(content))).toBe(true);
  });

  test("fs.write of text, mode, then a window read with offset", async () => {
    const { client } = agent();
    const w = await call(client, { op: "fs.write", path: "a.txt", mode: 0o600 }, enc.encode("hello world\n"));
    expect(w.result).toMatchObject({ mode: "0600", size_bytes: 12 });
    const r = await call(client, { op: "fs.read", path: "a.txt", offset: 6, max_bytes: 5 });
    expect(dec.decode(r.out)).toBe("world");
    expect(r.result).toMatchObject({ bytes: 5, truncated: true, encoding_hint: "utf8" });
  });

  test("an empty fs.write creates an empty file", async () => {
    const { client, root } = agent();
    await call(client, { op: "fs.write", path: "empty" }, new Uint8Array(0));
    expect(readFileSync(join(root, "empty")).byteLength).toBe(0);
    const r = await call(client, { op: "fs.read", path: "empty" });
    expect(r.result).toMatchObject({ bytes: 0, size_bytes: 0 });
  });

  test("fs.stat, fs.list, fs.mkdir, fs.move, fs.remove", async () => {
    const { client, root } = agent();
    expect((await call(client, { op: "fs.mkdir", path: "d/e" })).result).toMatchObject({
      path: "/workspace/d/e",
      artifact_type: "directory",
    });
    await call(client, { op: "fs.write", path: "d/e/x" }, enc.encode("x"));
    expect((await call(client, { op: "fs.stat", path: "d/e/x" })).result).toMatchObject({
      artifact_type: "file",
      size_bytes: 1,
    });
    const list = (await call(client, { op: "fs.list", path: "/workspace", recursive: true })).result;
    expect((list.entries as Array<{ path: string }>).map((e) => e.path)).toEqual([
      "/workspace/d",
      "/workspace/d/e",
      "/workspace/d/e/x",
    ]);
    expect((await call(client, { op: "fs.move", from: "d/e/x", to: "d/y" })).result).toMatchObject({
      path: "/workspace/d/y",
      moved_from: "/workspace/d/e/x",
    });
    expect(existsSync(join(root, "d/y"))).toBe(true);
    expect((await call(client, { op: "fs.remove", path: "d", recursive: true })).result).toMatchObject({
      removed: true,
    });
    expect(existsSync(join(root, "d"))).toBe(false);
  });

  test("fs errors keep their codes and never show the real root", async () => {
    const { client, root } = agent();
    const outside = mkdtempSync(join(tmpdir(), "pyro-server-outside-"));
    cleanups.push(() => rmSync(outside, { recursive: true, force: true }));
    writeFileSync(join(outside, "secret"), "s");
    symlinkSync(outside, join(root, "escape"));
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ op: "fs.read", path: "missing" }, "FILE_NOT_FOUND"],
      [{ op: "fs.read", path: "/etc/passwd" }, "PATH_OUTSIDE_WORKSPACE"],
      [{ op: "fs.read", path: "../x" }, "PATH_OUTSIDE_WORKSPACE"],
      [{ op: "fs.read", path: "escape/secret" }, "PATH_OUTSIDE_WORKSPACE"],
      [{ op: "fs.list", path: "escape" }, "PATH_OUTSIDE_WORKSPACE"],
      [{ op: "fs.read", path: "/workspace" }, "IS_A_DIRECTORY"],
      [{ op: "fs.remove", path: "/workspace", recursive: true }, "INVALID_INPUT"],
    ];
    for (const [req, code] of cases) {
      const err = await failure(client, req);
      expect(err.code).toBe(code as PyroError["code"]);
      expect(err.message).not.toContain(root);
      expect(JSON.stringify(err.details ?? {})).not.toContain(root);
    }
    const w = await failure(client, { op: "fs.write", path: "escape/new" }, enc.encode("x"));
    expect(w.code).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(existsSync(join(outside, "new"))).toBe(false);
    expect(existsSync(root)).toBe(true);
  });

  test("the client going away during an fs.write writes nothing", async () => {
    const { client, root, server } = agent();
    const s = client.open({ op: "fs.write", path: "partial" });
    s.sendData(enc.encode("half of it"));
    client.close();
    await until(() => server.isClosed, "the server to see the close");
    await Bun.sleep(20);
    expect(existsSync(join(root, "partial"))).toBe(false);
  });
});

describe("archive", () => {
  test("archive.export then archive.import round trip", async () => {
    const { client, root } = agent();
    await call(client, { op: "fs.write", path: "src/a.txt" }, enc.encode("alpha"));
    await call(client, { op: "fs.write", path: "src/sub/b.bin" }, new Uint8Array([0, 1, 2, 255]));
    const exported = await call(client, { op: "archive.export", path: "src" });
    expect(exported.result.bytes).toBe(exported.out.byteLength);
    expect(exported.out.byteLength).toBeGreaterThan(0);
    const imported = await call(client, { op: "archive.import", dest: "copy" }, exported.out);
    expect(imported.result.path).toBe("/workspace/copy");
    expect(readFileSync(join(root, "copy/src/a.txt"), "utf8")).toBe("alpha");
    expect([...readFileSync(join(root, "copy/src/sub/b.bin"))]).toEqual([0, 1, 2, 255]);
  });

  test("importing garbage fails the stream, not the connection", async () => {
    const { client, server } = agent();
    const err = await failure(
      client,
      { op: "archive.import", dest: "x" },
      enc.encode("this is not a tar archive".repeat(40)),
    );
    expect(ERROR_CODES).toContain(err.code);
    expect(server.isClosed).toBe(false);
    expect((await call(client, { op: "ping" })).result.pong).toBe(true);
  });
});

describe("connections", () => {
  test("concurrent requests of different kinds on one connection", async () => {
    const { client } = agent();
    const [ping, exec, write, info, missing] = await Promise.all([
      call(client, { op: "ping" }),
      call(client, { op: "exec", command: "echo x" }),
      call(client, { op: "fs.write", path: "c" }, enc.encode("c")),
      call(client, { op: "info" }),
      failure(client, { op: "fs.read", path: "nope" }),
    ]);
    expect(ping.result.pong).toBe(true);
    expect(dec.decode(exec.out)).toBe("x\n");
    expect(exec.result.exit_code).toBe(0);
    expect(write.result.size_bytes).toBe(1);
    expect(info.result.guest).toBe(false);
    expect(missing.code).toBe("FILE_NOT_FOUND");
  });

  test("two connections to the same agent options are independent", async () => {
    const a = agent();
    const [s2, c2] = channelPair();
    serveChannel(a.opts, s2);
    const client2 = new Connection(c2);
    cleanups.push(() => client2.close());
    await call(a.client, { op: "fs.write", path: "shared" }, enc.encode("1"));
    expect(dec.decode((await call(client2, { op: "fs.read", path: "shared" })).out)).toBe("1");
    a.client.close();
    expect((await call(client2, { op: "ping" })).result.pong).toBe(true);
  });
});
