import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { PyroError } from "../protocol/errors.ts";
import { connectUnixChannel } from "./socket-channel.ts";
import { scratch } from "./testing.ts";

const { sockPath, serve } = scratch("pyro-chan-");

/** Deterministic bytes, so both sides can check content without holding two copies. */
function pattern(total: number, seed: number): Uint8Array {
  const out = new Uint8Array(total);
  let x = seed;
  for (let i = 0; i < total; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function sha(chunks: Uint8Array[]): string {
  const h = new Bun.CryptoHasher("sha256");
  for (const c of chunks) h.update(c);
  return h.digest("hex");
}

/** A server that echoes nothing, but writes `send` with its own backpressure and records what it gets. */
function listenServer(path: string, send: Uint8Array | null) {
  const received: Uint8Array[] = [];
  let receivedBytes = 0;
  let closed!: () => void;
  const serverClosed = new Promise<void>((r) => (closed = r));
  let conn: Socket<{ off: number }> | null = null;
  const pump = (s: Socket<{ off: number }>) => {
    if (!send) return;
    while (s.data.off < send.length) {
      const n = s.write(send.subarray(s.data.off, s.data.off + (1 << 20)));
      if (n <= 0) return;
      s.data.off += n;
    }
  };
  const server = Bun.listen<{ off: number }>({
    unix: path,
    socket: {
      binaryType: "uint8array",
      open(s) {
        conn = s;
        s.data = { off: 0 };
        pump(s);
      },
      drain: pump,
      data(_s, bytes) {
        // Keep the very chunk objects: if Bun reused its buffer, the hash would break.
        received.push(bytes);
        receivedBytes += bytes.length;
      },
      close: () => closed(),
    },
  });
  serve(server);
  return { received, bytes: () => receivedBytes, serverClosed, conn: () => conn };
}

describe("connectUnixChannel", () => {
  test("50 MB each way arrive intact, close propagates", async () => {
    const path = sockPath();
    const size = 50 * 1024 * 1024;
    const down = pattern(size, 1);
    const up = pattern(size, 2);
    const server = listenServer(path, down);
    const ch = await connectUnixChannel(path, Date.now() + 5000);

    const got: Uint8Array[] = [];
    let gotBytes = 0;
    const allDown = new Promise<void>((resolve) =>
      ch.onData((b) => {
        got.push(b);
        gotBytes += b.length;
        if (gotBytes >= size) resolve();
      }),
    );
    // Write in uneven pieces from one reused buffer: queued remainders must be copies.
    const scratch = new Uint8Array(300_000);
    for (let off = 0; off < size; off += scratch.length) {
      const piece = up.subarray(off, off + scratch.length);
      scratch.set(piece);
      ch.write(scratch.subarray(0, piece.length));
      scratch.fill(0);
    }
    expect(ch.bufferedBytes).toBeGreaterThan(0); // the kernel cannot take 50 MB at once
    await allDown;
    expect(gotBytes).toBe(size);
    expect(sha(got)).toBe(sha([down]));

    const closedLocal = new Promise<Error | undefined>((r) => ch.onClose(r));
    ch.close(); // flushes the queue first, then ends
    await server.serverClosed;
    await closedLocal;
    expect(server.bytes()).toBe(size);
    expect(sha(server.received)).toBe(sha([up]));
  });

  test("peer close fires onClose; writes after close are dropped", async () => {
    const path = sockPath();
    const server = listenServer(path, null);
    const ch = await connectUnixChannel(path, Date.now() + 5000);
    const closed = new Promise<Error | undefined>((r) => ch.onClose(r));
    while (!server.conn()) await Bun.sleep(1);
    server.conn()!.end();
    await closed;
    ch.write(new Uint8Array([1, 2, 3]));
    // A late listener still hears about it.
    await new Promise<Error | undefined>((r) => ch.onClose(r));
  });

  test("data sent before onData is registered is delivered", async () => {
    const path = sockPath();
    listenServer(path, new TextEncoder().encode("hello"));
    const ch = await connectUnixChannel(path, Date.now() + 5000);
    await Bun.sleep(50);
    const text = await new Promise<string>((r) => ch.onData((b) => r(new TextDecoder().decode(b))));
    expect(text).toBe("hello");
    ch.close();
  });

  test("retries until the server appears", async () => {
    const path = sockPath();
    setTimeout(() => listenServer(path, new TextEncoder().encode("late")), 300);
    const ch = await connectUnixChannel(path, Date.now() + 5000);
    const text = await new Promise<string>((r) => ch.onData((b) => r(new TextDecoder().decode(b))));
    expect(text).toBe("late");
    ch.close();
  });

  test("gives up at the deadline with GUEST_UNREACHABLE", async () => {
    const path = sockPath();
    const err = await connectUnixChannel(path, Date.now() + 200).catch((e) => e);
    expect(err).toBeInstanceOf(PyroError);
    expect((err as PyroError).code).toBe("GUEST_UNREACHABLE");
    expect((err as PyroError).details?.error).toBe("ENOENT");
  });

  test("an abort signal stops the retries", async () => {
    const path = sockPath();
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("vmm exited")), 100);
    const err = await connectUnixChannel(path, Date.now() + 10_000, { signal: ac.signal }).catch((e) => e);
    expect((err as Error).message).toBe("vmm exited");
  });
});
