import { describe, expect, test } from "bun:test";
import type { ByteChannel } from "./channel.ts";
import { channelPair } from "./channels.ts";
import {
  type ClientStream,
  Connection,
  type ConnectionOptions,
  type ServerStream,
  type StreamEvent,
} from "./connection.ts";
import { PyroError } from "./errors.ts";
import {
  Channel,
  decodeJsonPayload,
  encodeFrame,
  encodeJsonFrame,
  Flag,
  type Frame,
  FrameDecoder,
  MAX_FRAME_PAYLOAD,
  makeFlags,
} from "./frame.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function pair(server: ConnectionOptions, client: ConnectionOptions = {}) {
  const [a, b] = channelPair();
  return {
    server: new Connection(a, server),
    client: new Connection(b, client),
    serverChannel: a,
    clientChannel: b,
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

/** Drain a stream's events; data is concatenated per channel. */
async function drain(
  s: ClientStream,
): Promise<{ json: Record<string, unknown>[]; data: Map<number, Uint8Array> }> {
  const json: Record<string, unknown>[] = [];
  const parts = new Map<number, Uint8Array[]>();
  for await (const e of s.events) {
    if (e.kind === "json") json.push(e.message);
    else parts.set(e.channel, [...(parts.get(e.channel) ?? []), e.bytes]);
  }
  return { json, data: new Map([...parts].map(([ch, ps]) => [ch, concat(ps)])) };
}

/** Echo server: every input byte goes back on STDOUT, then a result with the count. */
function echoServer(stream: ServerStream): void {
  (async () => {
    let n = 0;
    for await (const chunk of stream.input) {
      n += chunk.byteLength;
      stream.sendData(chunk, Channel.STDOUT);
    }
    stream.result({ echoed: n, request: stream.request });
  })().catch((err) => stream.fail(err));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

/** A deterministic byte pattern that differs per stream. */
function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

describe("Connection over channelPair", () => {
  test("request → result with data in between", async () => {
    const { client } = pair({
      onStream: (s) => {
        s.sendData(enc.encode("out"), Channel.STDOUT);
        s.sendData(enc.encode("err"), Channel.STDERR);
        s.sendJson({ type: "progress", n: 1 });
        s.result({ ok: true, op: s.request.op });
      },
    });
    const s = client.open({ op: "ping" });
    const [events, result] = await Promise.all([drain(s), s.done]);
    expect(result).toEqual({ ok: true, op: "ping" });
    expect(dec.decode(events.data.get(Channel.STDOUT))).toBe("out");
    expect(dec.decode(events.data.get(Channel.STDERR))).toBe("err");
    expect(events.json).toEqual([{ type: "progress", n: 1 }]);
  });

  test("echo: client input + endInput", async () => {
    const { client } = pair({ onStream: echoServer });
    const s = client.open({ op: "echo" });
    s.sendData(enc.encode("hello "));
    s.sendData(enc.encode("world"));
    s.endInput();
    s.endInput(); // idempotent
    const [events, result] = await Promise.all([drain(s), s.done]);
    expect(dec.decode(events.data.get(Channel.STDOUT))).toBe("hello world");
    expect(result).toEqual({ echoed: 11, request: { op: "echo" } });
  });

  test("call() sends input and collects events", async () => {
    const { client } = pair({ onStream: echoServer });
    const events: StreamEvent[] = [];
    async function* input() {
      yield enc.encode("a");
      yield enc.encode("bc");
    }
    const r = await client.call({ op: "x" }, { input: input(), onEvent: (e) => events.push(e) });
    expect(r.echoed).toBe(3);
    expect(dec.decode(concat(events.map((e) => (e.kind === "data" ? e.bytes : new Uint8Array(0)))))).toBe(
      "abc",
    );
    const r2 = await client.call({ op: "y" }, { input: enc.encode("xyz") });
    expect(r2.echoed).toBe(3);
  });

  test("200 concurrent streams, interleaved, each gets its own data back", async () => {
    const { client } = pair({ onStream: echoServer });
    const N = 200;
    const streams = Array.from({ length: N }, (_, i) => client.open({ op: "echo", i }));
    expect(new Set(streams.map((s) => s.id)).size).toBe(N);
    // Interleave: round-robin small pieces across all streams, yielding in between.
    const payloads = streams.map((_, i) => pattern(300 + i * 7, i));
    for (let off = 0; off < 2000; off += 97) {
      for (let i = 0; i < N; i++) {
        const p = payloads[i]!;
        if (off < p.byteLength) streams[i]!.sendData(p.subarray(off, Math.min(off + 97, p.byteLength)));
      }
      await Bun.sleep(0);
    }
    // End in reverse order so completion order differs from open order.
    for (let i = N - 1; i >= 0; i--) streams[i]!.endInput();
    const out = await Promise.all(
      streams.map(async (s) => ({ events: await drain(s), result: await s.done })),
    );
    for (let i = 0; i < N; i++) {
      const { events, result } = out[i]!;
      expect(result.request).toEqual({ op: "echo", i });
      expect(result.echoed).toBe(payloads[i]!.byteLength);
      expect(Buffer.from(events.data.get(Channel.STDOUT)!).equals(Buffer.from(payloads[i]!))).toBe(true);
    }
  });

  test("5 MB binary payloads round trip intact, split into frames", async () => {
    const frameSizes: number[] = []; // data frames crossing the wire client → server
    const [a, b] = channelPair();
    const sniff = new FrameDecoder();
    const spy: ByteChannel = {
      write: (bytes) => {
        for (const f of sniff.push(bytes)) if (!(f.flags & Flag.JSON)) frameSizes.push(f.payload.byteLength);
        b.write(bytes);
      },
      onData: (cb) => b.onData(cb),
      onClose: (cb) => b.onClose(cb),
      close: () => b.close(),
    };
    new Connection(a, { onStream: echoServer });
    const client = new Connection(spy);
    const big = pattern(5 * 1024 * 1024 + 123, 99);
    const s = client.open({ op: "echo" });
    s.sendData(big);
    s.endInput();
    const [events, result] = await Promise.all([drain(s), s.done]);
    expect(result.echoed).toBe(big.byteLength);
    const back = events.data.get(Channel.STDOUT)!;
    expect(back.byteLength).toBe(big.byteLength);
    expect(Buffer.from(back).equals(Buffer.from(big))).toBe(true);
    expect(Math.max(...frameSizes)).toBe(MAX_FRAME_PAYLOAD);
    expect(frameSizes.filter((n) => n > 0).length).toBe(Math.ceil(big.byteLength / MAX_FRAME_PAYLOAD));
  });

  test("server fail(PyroError) arrives as a rejected done with the same code, message and details", async () => {
    const { client } = pair({
      onStream: (s) =>
        s.fail(
          new PyroError("FILE_NOT_FOUND", "no such file: /workspace/x", {
            details: { path: "/workspace/x" },
          }),
        ),
    });
    const err = (await rejection(client.open({ op: "x" }).done)) as PyroError;
    expect(err).toBeInstanceOf(PyroError);
    expect(err.code).toBe("FILE_NOT_FOUND");
    expect(err.message).toBe("no such file: /workspace/x");
    expect(err.details).toEqual({ path: "/workspace/x" });
  });

  test("server fail with a non-PyroError becomes INTERNAL; OS errors get their codes", async () => {
    const { client } = pair({
      onStream: (s) => {
        if (s.request.op === "boom") s.fail(new Error("kaboom"));
        else s.fail(Object.assign(new Error("ENOENT"), { code: "ENOENT", path: "/p" }));
      },
    });
    const a = (await rejection(client.open({ op: "boom" }).done)) as PyroError;
    expect(a.code).toBe("INTERNAL");
    expect(a.message).toBe("kaboom");
    const b = (await rejection(client.open({ op: "enoent" }).done)) as PyroError;
    expect(b.code).toBe("FILE_NOT_FOUND");
  });

  test("only the first terminal message counts", async () => {
    const { client } = pair({
      onStream: (s) => {
        s.result({ n: 1 });
        s.result({ n: 2 });
        s.fail(new PyroError("INTERNAL", "late"));
        s.sendData(enc.encode("late"));
        s.sendJson({ late: true });
      },
    });
    const s = client.open({ op: "x" });
    const [events, result] = await Promise.all([drain(s), s.done]);
    expect(result).toEqual({ n: 1 });
    expect(events.json).toEqual([]);
    expect(events.data.size).toBe(0);
  });

  test("a result too large for one frame ends the stream with FRAME_TOO_LARGE, and the connection lives on", async () => {
    const { client } = pair({
      onStream: (s) =>
        s.request.op === "big" ? s.result({ text: "x".repeat(2 * 1024 * 1024) }) : s.result({ ok: 1 }),
    });
    const err = (await rejection(client.open({ op: "big" }).done)) as PyroError;
    expect(err.code).toBe("FRAME_TOO_LARGE");
    expect(await client.open({ op: "small" }).done).toEqual({ ok: 1 });
  });

  test("connection close mid-stream rejects pending client streams with the configured lostCode", async () => {
    let opened!: () => void;
    const gotStream = new Promise<void>((r) => (opened = r));
    const abandoned: number[] = [];
    const { server, client } = pair(
      {
        onStream: (s) => {
          s.onAbandon(() => abandoned.push(s.id));
          s.sendData(enc.encode("partial"), Channel.STDOUT);
          opened();
        },
      },
      { lostCode: "SUPERVISOR_UNREACHABLE", lostMessage: "supervisor went away" },
    );
    const s1 = client.open({ op: "a" });
    const s2 = client.open({ op: "b" });
    await gotStream;
    const closeReasons: Array<Error | undefined> = [];
    client.onClose((e) => closeReasons.push(e));
    server.close();
    const [e1, e2] = (await Promise.all([rejection(s1.done), rejection(s2.done)])) as PyroError[];
    for (const e of [e1!, e2!]) {
      expect(e).toBeInstanceOf(PyroError);
      expect(e.code).toBe("SUPERVISOR_UNREACHABLE");
      expect(e.message).toBe("supervisor went away");
    }
    // Events end (data that arrived before the close is still there).
    const ev = await drain(s1);
    expect(dec.decode(ev.data.get(Channel.STDOUT))).toBe("partial");
    expect(client.isClosed).toBe(true);
    expect(server.isClosed).toBe(true);
    expect(closeReasons).toHaveLength(1);
    expect(abandoned.sort()).toEqual([s1.id, s2.id].sort());
  });

  test("the default lostCode is GUEST_UNREACHABLE; open() on a closed connection rejects at once", async () => {
    const { client } = pair({ onStream: () => {} });
    const s = client.open({ op: "a" });
    client.close();
    expect(((await rejection(s.done)) as PyroError).code).toBe("GUEST_UNREACHABLE");
    const late = client.open({ op: "b" });
    expect(((await rejection(late.done)) as PyroError).code).toBe("GUEST_UNREACHABLE");
    let closedCb = false;
    client.onClose(() => (closedCb = true));
    expect(closedCb).toBe(true);
  });

  test("server input fails with GUEST_UNREACHABLE when the client goes away", async () => {
    let got!: (s: ServerStream) => void;
    const serverStream = new Promise<ServerStream>((r) => (got = r));
    const { client } = pair({ onStream: (s) => got(s) });
    const cs = client.open({ op: "upload" });
    cs.sendData(enc.encode("part"));
    const s = await serverStream;
    const it = s.input[Symbol.asyncIterator]();
    expect(dec.decode((await it.next()).value)).toBe("part");
    client.close();
    const err = (await rejection(it.next())) as PyroError;
    expect(err.code).toBe("GUEST_UNREACHABLE");
    expect(s.clientGone).toBe(true);
  });

  test("late frames for finished streams are ignored on both sides", async () => {
    const served: Record<string, unknown>[] = [];
    const [sc, cc] = channelPair();
    const server = new Connection(sc, {
      onStream: (s) => {
        served.push(s.request);
        s.result({ id: s.id });
      },
    });
    const client = new Connection(cc);
    const s = client.open({ op: "first" });
    expect(await s.done).toEqual({ id: s.id });
    // Server → client: frames for the finished stream and for ids never opened.
    sc.write(encodeJsonFrame(s.id, { type: "result", again: true }, true));
    sc.write(encodeFrame({ stream: s.id, flags: makeFlags({ channel: 1 }), payload: enc.encode("late") }));
    sc.write(encodeJsonFrame(9999, { type: "error", code: "INTERNAL", message: "stray" }, true));
    sc.write(
      encodeFrame({
        stream: 9998,
        flags: makeFlags({ channel: 2, end: true }),
        payload: enc.encode("stray"),
      }),
    );
    // Client → server: data and END for the finished stream (data never opens a stream).
    cc.write(encodeFrame({ stream: s.id, flags: 0, payload: enc.encode("late input") }));
    cc.write(encodeFrame({ stream: s.id, flags: makeFlags({ end: true }), payload: new Uint8Array(0) }));
    const s2 = client.open({ op: "second" });
    expect((await s2.done).id).toBe(s2.id);
    expect(served.map((r) => r.op)).toEqual(["first", "second"]);
    expect(client.isClosed).toBe(false);
    expect(server.isClosed).toBe(false);
  });

  test("signal/control JSON messages reach onControl; END ends input", async () => {
    const controls: Record<string, unknown>[] = [];
    const { client } = pair({
      onStream: (s) => {
        s.onControl((m) => {
          controls.push(m);
          if (m.op === "signal") s.result({ stopped_by: m.signal });
        });
      },
    });
    const s = client.open({ op: "exec", command: "sleep 100" });
    s.sendJson({ op: "resize", cols: 80 });
    s.sendJson({ op: "signal", signal: "SIGTERM" });
    expect(await s.done).toEqual({ stopped_by: "SIGTERM" });
    expect(controls).toEqual([
      { op: "resize", cols: 80 },
      { op: "signal", signal: "SIGTERM" },
    ]);
    // After the result, the stream is finished: sendJson is a no-op locally.
    s.sendJson({ op: "signal", signal: "SIGKILL" });
    await Bun.sleep(5);
    expect(controls).toHaveLength(2);
  });

  test("a request frame with END has its input already ended", async () => {
    const [sc, cc] = channelPair();
    new Connection(sc, { onStream: echoServer });
    const replies = new FrameDecoder();
    const frames: Frame[] = [];
    cc.onData((b) => frames.push(...replies.push(b)));
    cc.write(encodeJsonFrame(5, { op: "echo" }, true));
    await until(() => frames.length > 0);
    expect(frames[0]!.flags).toBe(Flag.JSON | Flag.END);
    expect(decodeJsonPayload(frames[0]!.payload)).toEqual({
      type: "result",
      echoed: 0,
      request: { op: "echo" },
    });
  });

  test("corrupt input from the peer drops the connection and rejects its streams", async () => {
    for (const bad of [
      (() => {
        const h = new Uint8Array(9);
        new DataView(h.buffer).setUint32(0, MAX_FRAME_PAYLOAD + 1);
        return h;
      })(),
      encodeFrame({ stream: 1, flags: Flag.JSON | Flag.END, payload: enc.encode("{not json") }),
    ]) {
      const [sc, cc] = channelPair();
      const client = new Connection(cc, { lostCode: "GUEST_UNREACHABLE" });
      let closedWith: Error | undefined;
      client.onClose((e) => (closedWith = e));
      const s = client.open({ op: "x" });
      sc.write(bad);
      const err = (await rejection(s.done)) as PyroError;
      // The real cause (corrupt framing) reaches the waiting stream, not a generic "lost".
      expect(["FRAME_TOO_LARGE", "PROTOCOL_ERROR"]).toContain(err.code);
      expect(client.isClosed).toBe(true);
      expect(closedWith).toBeInstanceOf(PyroError);
      expect((closedWith as PyroError).code).toBe(err.code);
    }
  });

  test("server side: a stream opening with non-object JSON drops the connection", async () => {
    for (const opening of ["[1]", "1", "null", '"op"']) {
      const [sc, cc] = channelPair();
      let handled = 0;
      const server = new Connection(sc, { onStream: () => handled++ });
      let reason: Error | undefined;
      server.onClose((e) => (reason = e));
      cc.write(encodeFrame({ stream: 1, flags: Flag.JSON, payload: enc.encode(opening) }));
      await until(() => server.isClosed);
      expect(handled).toBe(0);
      expect((reason as PyroError).code).toBe("PROTOCOL_ERROR");
    }
  });

  test("stream ids wrap around below 2^31", async () => {
    const { client } = pair({ onStream: (s) => s.result({ id: s.id }) });
    (client as unknown as { nextId: number }).nextId = 0x7fffffff;
    const a = client.open({ op: "a" });
    const b = client.open({ op: "b" });
    expect(a.id).toBe(0x7fffffff);
    expect(b.id).toBe(1);
    expect((await a.done).id).toBe(0x7fffffff);
    expect((await b.done).id).toBe(1);
  });
});

async function until(cond: () => boolean, what = "condition"): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    if (cond()) return;
    await Bun.sleep(1);
  }
  throw new Error(`timed out waiting for ${what}`);
}
