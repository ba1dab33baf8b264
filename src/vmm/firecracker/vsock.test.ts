import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { PyroError } from "../../protocol/errors.ts";
import { rejection } from "../../protocol/testing.ts";
import { scratch } from "../testing.ts";
import { AGENT_VSOCK_PORT, connectVsock } from "./vsock.ts";

const { sockPath, serve } = scratch("pyro-vsock-", "vsock.sock");

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A stand-in for Firecracker's vsock UDS: `onLine` gets the CONNECT line of each connection. */
function fakeFirecracker(path: string, onLine: (s: Socket<Conn>, line: string) => void) {
  const state = { connections: 0, closed: 0, lines: [] as string[], received: [] as string[] };
  const server = Bun.listen<Conn>({
    unix: path,
    socket: {
      binaryType: "uint8array",
      open(s) {
        state.connections++;
        s.data = { buf: "", gotLine: false };
      },
      data(s, bytes) {
        if (s.data.gotLine) {
          state.received.push(dec(bytes));
          return;
        }
        s.data.buf += dec(bytes);
        const nl = s.data.buf.indexOf("\n");
        if (nl < 0) return;
        s.data.gotLine = true;
        const line = s.data.buf.slice(0, nl);
        state.lines.push(line);
        const rest = s.data.buf.slice(nl + 1);
        if (rest) state.received.push(rest);
        onLine(s, line);
      },
      close() {
        state.closed++;
      },
    },
  });
  serve(server);
  return state;
}
interface Conn {
  buf: string;
  gotLine: boolean;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await Bun.sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("connectVsock", () => {
  test("sends CONNECT, keeps bytes that share a chunk with OK, then streams both ways", async () => {
    const path = sockPath();
    const fc = fakeFirecracker(path, (s) => {
      s.write("OK 1073741824\nhello from the guest"); // one write: one chunk on the client
    });
    const ch = await connectVsock(path, AGENT_VSOCK_PORT, Date.now() + 5000);
    expect(fc.lines).toEqual([`CONNECT ${AGENT_VSOCK_PORT}`]);
    // Registered only now: the early bytes must have waited.
    const got: string[] = [];
    ch.onData((b) => got.push(dec(b)));
    await until(() => got.join("") === "hello from the guest", "early bytes");
    ch.write(enc("ping"));
    await until(() => fc.received.join("") === "ping", "bytes at the server");
    const closed = new Promise<Error | undefined>((r) => ch.onClose(r));
    ch.close();
    await closed;
    await until(() => fc.closed === 1, "server-side close");
  });

  test("an OK split over several chunks still works", async () => {
    const path = sockPath();
    fakeFirecracker(path, async (s) => {
      s.write("O");
      s.flush();
      await Bun.sleep(20);
      s.write("K 5");
      s.flush();
      await Bun.sleep(20);
      s.write("\nxy");
    });
    const ch = await connectVsock(path, 52, Date.now() + 5000);
    const got: string[] = [];
    ch.onData((b) => got.push(dec(b)));
    await until(() => got.join("") === "xy", "stream bytes");
    ch.close();
  });

  test("a reply other than OK fails at once with PROTOCOL_ERROR and closes the socket", async () => {
    const path = sockPath();
    const fc = fakeFirecracker(path, (s) => {
      s.write("HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    const err = await rejection(connectVsock(path, AGENT_VSOCK_PORT, Date.now() + 5000));
    expect(err.code).toBe("PROTOCOL_ERROR");
    expect(err.message).toContain("HTTP/1.1 400");
    await until(() => fc.closed === 1, "socket closed");
    expect(fc.connections).toBe(1); // not retried
  });

  test("Firecracker closing the connection (guest not listening) is retried until the deadline", async () => {
    const path = sockPath();
    const fc = fakeFirecracker(path, (s) => s.end());
    const err = await rejection(connectVsock(path, AGENT_VSOCK_PORT, Date.now() + 400));
    expect(err.code).toBe("GUEST_UNREACHABLE");
    expect(err.message).toContain("closed before OK");
    expect(fc.connections).toBeGreaterThan(1);
  });

  test("no reply at all: the attempt times out, its socket is closed, and it is retried", async () => {
    const path = sockPath();
    const fc = fakeFirecracker(path, () => {});
    const err = await rejection(
      connectVsock(path, AGENT_VSOCK_PORT, Date.now() + 600, { attemptTimeoutMs: 100 }),
    );
    expect(err.code).toBe("GUEST_UNREACHABLE");
    expect(err.message).toContain("no reply");
    expect(fc.connections).toBeGreaterThan(1);
    await until(() => fc.closed === fc.connections, "every attempt's socket closed");
  });

  test("a socket that never appears gives GUEST_UNREACHABLE", async () => {
    const err = await rejection(connectVsock(sockPath(), AGENT_VSOCK_PORT, Date.now() + 150));
    expect(err.code).toBe("GUEST_UNREACHABLE");
  });

  test("the guest starting to listen later is picked up by a retry", async () => {
    const path = sockPath();
    let listening = false;
    const fc = fakeFirecracker(path, (s) => {
      if (listening) s.write("OK 7\n");
      else s.end();
    });
    setTimeout(() => {
      listening = true;
    }, 100);
    const ch = await connectVsock(path, AGENT_VSOCK_PORT, Date.now() + 5000);
    expect(fc.connections).toBeGreaterThan(1);
    ch.close();
  });

  test("an abort signal stops the retries with its reason", async () => {
    const path = sockPath();
    fakeFirecracker(path, (s) => s.end());
    const ac = new AbortController();
    setTimeout(() => ac.abort(new PyroError("VMM_FAILED", "firecracker exited")), 50);
    const err = await rejection(
      connectVsock(path, AGENT_VSOCK_PORT, Date.now() + 10_000, { signal: ac.signal }),
    );
    expect(err.code).toBe("VMM_FAILED");
  });
});
