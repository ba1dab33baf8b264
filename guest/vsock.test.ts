import { dlopen, FFIType, ptr } from "bun:ffi";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { endianness, tmpdir } from "node:os";
import { join } from "node:path";
import type { ByteChannel } from "../src/protocol/channel.ts";
import { needs } from "../test/capabilities.ts";
import {
  encodeSockaddrVm,
  listenVsock,
  serveListeningFd,
  VMADDR_CID_ANY,
  VMADDR_CID_LOCAL,
} from "./vsock.ts";

const closers: (() => void)[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const randomPort = () => 20_000 + Math.floor(Math.random() * 40_000);

describe("encodeSockaddrVm", () => {
  test.skipIf(endianness() !== "LE")(
    "16 bytes: family, reserved, port, cid, flags+zero (little-endian host)",
    () => {
      expect([...encodeSockaddrVm(1024)]).toEqual([
        40, 0, 0, 0, 0, 4, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
      ]);
      expect([...encodeSockaddrVm(0x12345678, VMADDR_CID_LOCAL)]).toEqual([
        40, 0, 0, 0, 0x78, 0x56, 0x34, 0x12, 1, 0, 0, 0, 0, 0, 0, 0,
      ]);
      expect(encodeSockaddrVm(52, VMADDR_CID_ANY)).toHaveLength(16);
    },
  );

  test("port and cid must be u32", () => {
    expect(() => encodeSockaddrVm(-1)).toThrow(RangeError);
    expect(() => encodeSockaddrVm(2 ** 32)).toThrow(RangeError);
    expect(() => encodeSockaddrVm(1.5)).toThrow(RangeError);
    expect(() => encodeSockaddrVm(1024, 2 ** 32)).toThrow(RangeError);
  });
});

describe("listenVsock", () => {
  needs("vsock").test("binds, listens and releases the port on close", () => {
    const port = randomPort();
    const close = listenVsock(port, () => {});
    // While listening, the port is taken...
    expect(() => listenVsock(port, () => {})).toThrow(/EADDRINUSE|bind/);
    close();
    // ...and after close it is free again: the listening fd really was closed.
    closers.push(listenVsock(port, () => {}));
  });

  // The loopback transport (CID 1) is what lets one machine talk to itself over vsock.
  needs("vsock", "vsock-loopback").test("exchanges bytes with a client on CID 1", async () => {
    const port = randomPort();
    closers.push(
      listenVsock(port, (ch) => {
        ch.onData((bytes) =>
          ch.write(new TextEncoder().encode(new TextDecoder().decode(bytes).toUpperCase())),
        );
      }),
    );
    // The client runs in its own process: a blocking connect() there cannot stall our loop.
    const dir = mkdtempSync(join(tmpdir(), "pyro-vsock-client-"));
    dirs.push(dir);
    const client = join(dir, "client.ts");
    writeFileSync(
      client,
      `import { dlopen, FFIType, ptr } from "bun:ffi";
import { encodeSockaddrVm } from ${JSON.stringify(join(import.meta.dir, "vsock.ts"))};
const c = dlopen("libc.so.6", {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  connect: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
}).symbols;
const fd = c.socket(40, 1, 0);
const addr = encodeSockaddrVm(${port}, 1);
if (c.connect(fd, ptr(addr), 16) !== 0) { console.error("connect failed"); process.exit(2); }
const msg = new TextEncoder().encode("ping over vsock");
c.write(fd, ptr(msg), msg.length);
const buf = new Uint8Array(64);
let got = "";
while (got.length < msg.length) {
  const n = Number(c.read(fd, ptr(buf), buf.length));
  if (n <= 0) break;
  got += new TextDecoder().decode(buf.subarray(0, n));
}
process.stdout.write(got);
`,
    );
    const proc = Bun.spawn([process.execPath, client], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(proc.stdout).text();
    expect(await proc.exited).toBe(0);
    expect(out).toBe("PING OVER VSOCK");
  });
});

/** A listening AF_UNIX socket made with libc, like listenVsock makes its AF_VSOCK one. */
function ffiUnixListener(path: string): number {
  const c = dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  }).symbols;
  const fd = c.socket(1 /* AF_UNIX */, 1 | 0o4000 | 0o2000000, 0);
  const addr = new Uint8Array(110); // sa_family_t + sun_path[108]
  new DataView(addr.buffer).setUint16(0, 1, endianness() === "LE");
  addr.set(new TextEncoder().encode(path), 2);
  if (fd < 0 || c.bind(fd, ptr(addr), addr.length) !== 0 || c.listen(fd, 8) !== 0)
    throw new Error("AF_UNIX setup failed");
  return fd;
}

describe("serveListeningFd (the accept path of listenVsock, on an AF_UNIX fd)", () => {
  test("echo, 8 MB down through backpressure, and close in both directions", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pyro-fd-"));
    dirs.push(dir);
    const path = join(dir, "s.sock");
    const big = new Uint8Array(8 * 1024 * 1024).map((_, i) => (i * 7) & 0xff);
    const serverChannels: ByteChannel[] = [];
    let serverSawClose = 0;
    closers.push(
      serveListeningFd(ffiUnixListener(path), (ch) => {
        serverChannels.push(ch);
        ch.onClose(() => serverSawClose++);
        ch.onData((bytes) => {
          const text = new TextDecoder().decode(bytes);
          if (text === "big") ch.write(big);
          else ch.write(new TextEncoder().encode(text.toUpperCase()));
        });
      }),
    );

    const chunks: Uint8Array[] = [];
    let received = 0;
    let clientClosed!: () => void;
    const clientGone = new Promise<void>((r) => (clientClosed = r));
    const sock = await Bun.connect({
      unix: path,
      socket: {
        binaryType: "uint8array",
        data(_s, bytes) {
          chunks.push(bytes);
          received += bytes.length;
        },
        close: () => clientClosed(),
      },
    });
    sock.write("hello");
    await until(() => received === 5, "echo");
    expect(new TextDecoder().decode(chunks.splice(0)[0])).toBe("HELLO");
    received = 0;
    sock.write("big");
    await until(() => received === big.length, "8 MB");
    const all = new Uint8Array(big.length);
    let off = 0;
    for (const c of chunks) {
      all.set(c, off);
      off += c.length;
    }
    expect(Bun.hash(all)).toBe(Bun.hash(big));

    // Server-side close reaches the client; the server's own onClose fires too.
    serverChannels[0]!.close();
    await clientGone;
    await until(() => serverSawClose === 1, "server onClose");
  });
});

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await Bun.sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}
