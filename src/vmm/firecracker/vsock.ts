/**
 * Host side of Firecracker's hybrid vsock (Firecracker docs/vsock.md, "Host-Initiated
 * Connections"): connect to the device's UNIX socket, send `CONNECT <port>\n`, read
 * `OK <host-side port>\n`, and from then on the UNIX stream IS the guest port's stream.
 * If nobody listens on the guest port, Firecracker simply closes the connection, so "closed
 * before OK" and "no reply yet" both mean "try again" until the deadline.
 */
import { ChannelListeners } from "../../protocol/channel.ts";
import { PyroError } from "../../protocol/errors.ts";
import { sleep } from "../process.ts";
import { connectUnixChannel, type UnixByteChannel } from "../socket-channel.ts";

export { AGENT_VSOCK_PORT } from "../../protocol/transport.ts";

export interface VsockConnectOptions {
  /** Longest wait for `OK` on one connection before trying a fresh one. */
  attemptTimeoutMs?: number;
  /** Stop retrying early (e.g. the VMM exited); rejects with the signal's reason. */
  signal?: AbortSignal;
}

// "OK " + a u32 in decimal + "\n" is at most 14 bytes; anything longer without a newline
// is not Firecracker talking.
const MAX_REPLY_LINE = 32;

/** Marks failures worth another attempt (guest not listening yet, reply not in time). */
class RetryableHandshakeError extends Error {}

/**
 * Open a stream to guest vsock `port` through the hybrid-vsock socket at `udsPath`,
 * retrying until `deadlineMs` — an absolute time on the `Date.now()` scale, not a duration.
 * A reply that is not `OK <n>` fails at once with PROTOCOL_ERROR (something other than
 * Firecracker answers); running out of time fails with GUEST_UNREACHABLE.
 */
export async function connectVsock(
  udsPath: string,
  port: number,
  deadlineMs: number,
  opts: VsockConnectOptions = {},
): Promise<UnixByteChannel> {
  const attemptTimeout = opts.attemptTimeoutMs ?? 3000;
  let delay = 10;
  let attempts = 0;
  let lastFailure = "";
  const unreachable = (why: string, cause?: unknown) =>
    new PyroError("GUEST_UNREACHABLE", `no vsock stream to guest port ${port} via ${udsPath}: ${why}`, {
      details: { udsPath, port, attempts, lastFailure: lastFailure || undefined },
      cause,
    });
  for (;;) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    attempts++;
    let raw: UnixByteChannel;
    try {
      raw = await connectUnixChannel(udsPath, deadlineMs, { signal: opts.signal });
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const msg = err instanceof Error ? err.message : String(err);
      throw unreachable(lastFailure ? `${msg} (earlier: ${lastFailure})` : msg, err);
    }
    const budget = Math.max(1, Math.min(attemptTimeout, deadlineMs - Date.now()));
    try {
      return await handshake(raw, port, budget);
    } catch (err) {
      if (!(err instanceof RetryableHandshakeError)) throw err;
      lastFailure = err.message;
    }
    const left = deadlineMs - Date.now();
    if (left <= 0) throw unreachable(`deadline passed after ${attempts} attempt(s); last: ${lastFailure}`);
    await sleep(Math.min(delay, left), opts.signal);
    delay = Math.min(delay * 2, 250);
  }
}

/** One CONNECT/OK exchange on a fresh connection; closes it on any failure. */
function handshake(raw: UnixByteChannel, port: number, timeoutMs: number): Promise<UnixByteChannel> {
  return new Promise((resolve, reject) => {
    const stream = new HandshakenChannel(raw);
    let pending: Uint8Array = new Uint8Array(0);
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      raw.close();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new RetryableHandshakeError(`no reply to CONNECT ${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    raw.onClose((reason) => {
      if (settled) stream.emitClose(reason);
      else
        fail(new RetryableHandshakeError(`closed before OK (is the guest listening on port ${port} yet?)`));
    });
    raw.onData((chunk) => {
      if (settled) {
        stream.emitData(chunk);
        return;
      }
      pending = concat(pending, chunk);
      const nl = pending.indexOf(0x0a);
      if (nl < 0) {
        if (pending.length > MAX_REPLY_LINE) fail(badReply(pending, port));
        return;
      }
      if (!/^OK \d{1,10}$/.test(new TextDecoder().decode(pending.subarray(0, nl)))) {
        fail(badReply(pending.subarray(0, nl), port));
        return;
      }
      settled = true;
      clearTimeout(timer);
      // Bytes after the OK line in the same chunk are already the guest's stream.
      if (nl + 1 < pending.length) stream.emitData(pending.slice(nl + 1));
      resolve(stream);
    });
    raw.write(new TextEncoder().encode(`CONNECT ${port}\n`));
  });
}

function badReply(bytes: Uint8Array, port: number): PyroError {
  const reply = new TextDecoder().decode(bytes.subarray(0, MAX_REPLY_LINE));
  return new PyroError(
    "PROTOCOL_ERROR",
    `vsock handshake for port ${port}: expected "OK <port>", got ${JSON.stringify(reply)}`,
    {
      details: { port, reply },
    },
  );
}

/**
 * The channel handed out after the handshake. The raw channel's listeners are already taken
 * by the handshake, so this one re-emits, holding bytes until someone listens.
 */
class HandshakenChannel extends ChannelListeners implements UnixByteChannel {
  constructor(private readonly raw: UnixByteChannel) {
    super();
  }

  get bufferedBytes(): number {
    return this.raw.bufferedBytes;
  }

  write(bytes: Uint8Array): void {
    this.raw.write(bytes);
  }

  close(): void {
    this.raw.close();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
