/**
 * Framing for the one byte stream between host and guest (and between clients and the
 * supervisor): `[len u32 BE][stream u32 BE][flags u8][payload len bytes]`.
 * Many logical streams share one connection; binary payloads stay binary.
 */
import { PyroError } from "./errors.ts";

export const HEADER_BYTES = 9;
/** Largest payload one frame may carry; senders split larger data. */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;

export const Flag = {
  /** payload is a UTF-8 JSON message (otherwise raw bytes) */
  JSON: 0x01,
  /** last frame of this stream in this direction */
  END: 0x02,
} as const;

/** Data channels ride in the high nibble of flags. */
export const Channel = { INPUT: 0, STDOUT: 1, STDERR: 2 } as const;
export const CHANNEL_SHIFT = 4;
export type ChannelNumber = number;

export interface Frame {
  stream: number;
  flags: number;
  payload: Uint8Array;
}

export function channelOf(flags: number): ChannelNumber {
  return flags >> CHANNEL_SHIFT;
}

export function makeFlags(opts: { json?: boolean; end?: boolean; channel?: number }): number {
  const ch = opts.channel ?? 0;
  if (!Number.isInteger(ch) || ch < 0 || ch > 15) throw new PyroError("INVALID_INPUT", `bad channel ${ch}`);
  return (opts.json ? Flag.JSON : 0) | (opts.end ? Flag.END : 0) | (ch << CHANNEL_SHIFT);
}

export function encodeFrame(frame: Frame): Uint8Array {
  const { stream, flags, payload } = frame;
  if (payload.byteLength > MAX_FRAME_PAYLOAD) {
    throw new PyroError("FRAME_TOO_LARGE", `frame payload ${payload.byteLength} > ${MAX_FRAME_PAYLOAD}`);
  }
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xffffffff) {
    throw new PyroError("PROTOCOL_ERROR", `bad stream id ${stream}`);
  }
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, payload.byteLength);
  dv.setUint32(4, stream);
  dv.setUint8(8, flags & 0xff);
  out.set(payload, HEADER_BYTES);
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeJsonFrame(stream: number, message: unknown, end = false): Uint8Array {
  return encodeFrame({
    stream,
    flags: makeFlags({ json: true, end }),
    payload: encoder.encode(JSON.stringify(message)),
  });
}

export function decodeJsonPayload(payload: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(payload));
  } catch {
    throw new PyroError("PROTOCOL_ERROR", "frame payload is not valid UTF-8 JSON");
  }
}

/**
 * Incremental decoder: feed arbitrary chunks, get whole frames. Memory is bounded by one
 * maximal frame: a header announcing more than MAX_FRAME_PAYLOAD fails at once, before
 * anything is allocated for it.
 */
export class FrameDecoder {
  // Chunks are kept as a list and joined once per frame, so small chunks cost linear time.
  private chunks: Uint8Array[] = [];
  private held = 0;
  private failed: PyroError | null = null;

  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk.slice());
      this.held += chunk.byteLength;
    }
    const frames: Frame[] = [];
    while (this.held >= HEADER_BYTES) {
      const header = this.peek(HEADER_BYTES);
      const dv = new DataView(header.buffer, header.byteOffset, HEADER_BYTES);
      const len = dv.getUint32(0);
      if (len > MAX_FRAME_PAYLOAD) {
        this.failed = new PyroError(
          "FRAME_TOO_LARGE",
          `frame announces ${len} bytes (max ${MAX_FRAME_PAYLOAD})`,
        );
        this.chunks = [];
        this.held = 0;
        throw this.failed;
      }
      if (this.held < HEADER_BYTES + len) break;
      const whole = this.take(HEADER_BYTES + len);
      frames.push({ stream: dv.getUint32(4), flags: dv.getUint8(8), payload: whole.subarray(HEADER_BYTES) });
    }
    return frames;
  }

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.held;
  }

  /** The first n held bytes (n <= held), joining chunks only as far as needed. */
  private peek(n: number): Uint8Array {
    const first = this.chunks[0] as Uint8Array;
    if (first.byteLength >= n) return first.subarray(0, n);
    const out = new Uint8Array(n);
    let off = 0;
    for (const c of this.chunks) {
      const part = c.subarray(0, Math.min(c.byteLength, n - off));
      out.set(part, off);
      off += part.byteLength;
      if (off === n) break;
    }
    return out;
  }

  /** Remove and return the first n held bytes as one buffer. */
  private take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0] as Uint8Array;
      const want = n - off;
      if (c.byteLength <= want) {
        out.set(c, off);
        off += c.byteLength;
        this.chunks.shift();
      } else {
        out.set(c.subarray(0, want), off);
        this.chunks[0] = c.subarray(want);
        off += want;
      }
    }
    this.held -= n;
    return out;
  }
}
