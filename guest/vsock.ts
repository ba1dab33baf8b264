/**
 * The guest agent's vsock listener (Firecracker has no virtio-console, so the agent is
 * reached over vsock there). Node/Bun have no AF_VSOCK, so the listening socket is made with
 * libc through bun:ffi — socket(), bind() to a sockaddr_vm, listen() — and then handed to
 * Bun.listen({ fd }), which accepts in Bun's event loop (tried: `Bun.connect({ fd })` works too,
 * `new net.Socket({ fd })` does not).
 */

import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { endianness } from "node:os";
import type { ByteChannel } from "../src/protocol/channel.ts";
import { socketChannelHandlers } from "../src/protocol/channels.ts";
import { PyroError } from "../src/protocol/errors.ts";

export const AF_VSOCK = 40;
/** Bind to whatever CID this VM has. */
export const VMADDR_CID_ANY = 0xffffffff;
/** The local (loopback) CID, served by the vsock_loopback transport. */
export const VMADDR_CID_LOCAL = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOCKADDR_VM_SIZE = 16;

/**
 * struct sockaddr_vm (linux/vm_sockets.h), 16 bytes in host byte order:
 * svm_family u16 @0, svm_reserved1 u16 @2, svm_port u32 @4, svm_cid u32 @8,
 * svm_flags u8 @12, svm_zero[3] @13 (must be zero).
 */
export function encodeSockaddrVm(port: number, cid: number = VMADDR_CID_ANY): Uint8Array {
  for (const [name, n] of [
    ["port", port],
    ["cid", cid],
  ] as const) {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
      throw new RangeError(`vsock ${name} must be a u32, got ${n}`);
  }
  const bytes = new Uint8Array(SOCKADDR_VM_SIZE);
  const view = new DataView(bytes.buffer);
  const le = endianness() === "LE";
  view.setUint16(0, AF_VSOCK, le);
  view.setUint32(4, port, le);
  view.setUint32(8, cid, le);
  return bytes;
}

function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}
let libc: ReturnType<typeof openLibc> | null = null;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  13: "EACCES",
  19: "ENODEV",
  22: "EINVAL",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
};

function osError(c: ReturnType<typeof openLibc>, what: string): PyroError {
  // Read right after the failing call; nothing in between runs on this thread.
  const loc = c.__errno_location();
  const errno = loc ? read.i32(loc, 0) : 0;
  const name = ERRNO_NAMES[errno] ?? `errno ${errno}`;
  return new PyroError("IO_ERROR", `${what} failed: ${name}`, { details: { errno, call: what } });
}

export interface ListenVsockOptions {
  /** Defaults to VMADDR_CID_ANY. */
  cid?: number;
  backlog?: number;
}

/**
 * Listen on vsock `port` and call `onConnection` with a ByteChannel per accepted connection.
 * Returns a function that stops listening and closes every open connection.
 */
export function listenVsock(
  port: number,
  onConnection: (ch: ByteChannel) => void,
  opts: ListenVsockOptions = {},
): () => void {
  const addr = encodeSockaddrVm(port, opts.cid ?? VMADDR_CID_ANY);
  libc ??= openLibc();
  const c = libc;
  const fd = c.socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw osError(c, "socket(AF_VSOCK)");
  if (c.bind(fd, ptr(addr), addr.length) !== 0) {
    const err = osError(c, `bind(vsock port ${port})`);
    c.close(fd);
    throw err;
  }
  if (c.listen(fd, opts.backlog ?? 16) !== 0) {
    const err = osError(c, `listen(vsock port ${port})`);
    c.close(fd);
    throw err;
  }
  try {
    return serveListeningFd(fd, onConnection);
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

/**
 * Accept on an already listening socket fd in Bun's event loop, one ByteChannel per
 * connection. Returns a function that stops accepting, closes the fd and every connection.
 * (Separate from listenVsock so the accept path can be tested on any socket family.)
 */
export function serveListeningFd(fd: number, onConnection: (ch: ByteChannel) => void): () => void {
  // Bun's types only list hostname/port and unix for listen; { fd } works at runtime.
  const listener = (Bun.listen as (o: unknown) => { stop(closeActive?: boolean): void })({
    fd,
    socket: socketChannelHandlers(onConnection),
  });
  // stop() closes the listening fd too (a second listen on the port succeeds; see the test).
  return () => listener.stop(true);
}
