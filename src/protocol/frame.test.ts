import { describe, expect, test } from "bun:test";
import { PyroError } from "./errors.ts";
import {
  Channel,
  channelOf,
  decodeJsonPayload,
  encodeFrame,
  encodeJsonFrame,
  Flag,
  type Frame,
  FrameDecoder,
  HEADER_BYTES,
  MAX_FRAME_PAYLOAD,
  makeFlags,
} from "./frame.ts";

const enc = new TextEncoder();

function bytes(...xs: number[]): Uint8Array {
  return Uint8Array.from(xs);
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

/** Plain copies so toEqual compares contents, not buffer identity. */
function plain(frames: Frame[]) {
  return frames.map((f) => ({ stream: f.stream, flags: f.flags, payload: [...f.payload] }));
}

function expectPyroError(fn: () => unknown, code: PyroError["code"]): PyroError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(PyroError);
  expect((caught as PyroError).code).toBe(code);
  return caught as PyroError;
}

const SAMPLE: Frame[] = [
  { stream: 1, flags: makeFlags({ json: true }), payload: enc.encode('{"op":"ping"}') },
  { stream: 1, flags: makeFlags({ json: true, end: true }), payload: enc.encode('{"type":"result"}') },
  { stream: 7, flags: makeFlags({ channel: Channel.STDOUT }), payload: bytes(0, 1, 2, 255, 254) },
  {
    stream: 0xffffffff,
    flags: makeFlags({ channel: Channel.STDERR, end: true }),
    payload: new Uint8Array(0),
  },
  { stream: 0, flags: 0, payload: new Uint8Array(0) },
  { stream: 42, flags: makeFlags({ channel: 15 }), payload: bytes(9) },
];

describe("encodeFrame", () => {
  test("header layout is [len u32 BE][stream u32 BE][flags u8]", () => {
    const out = encodeFrame({ stream: 0x01020304, flags: 0x23, payload: bytes(0xaa, 0xbb) });
    expect([...out]).toEqual([0, 0, 0, 2, 1, 2, 3, 4, 0x23, 0xaa, 0xbb]);
    expect(out.byteLength).toBe(HEADER_BYTES + 2);
  });

  test("an empty payload is just the header", () => {
    expect([...encodeFrame({ stream: 5, flags: 2, payload: new Uint8Array(0) })]).toEqual([
      0, 0, 0, 0, 0, 0, 0, 5, 2,
    ]);
  });

  test("a payload of exactly MAX_FRAME_PAYLOAD is allowed", () => {
    const out = encodeFrame({ stream: 1, flags: 0, payload: new Uint8Array(MAX_FRAME_PAYLOAD) });
    expect(out.byteLength).toBe(HEADER_BYTES + MAX_FRAME_PAYLOAD);
  });

  test("refuses payloads over MAX_FRAME_PAYLOAD with FRAME_TOO_LARGE", () => {
    expectPyroError(
      () => encodeFrame({ stream: 1, flags: 0, payload: new Uint8Array(MAX_FRAME_PAYLOAD + 1) }),
      "FRAME_TOO_LARGE",
    );
  });

  test("refuses stream ids that are not u32", () => {
    for (const stream of [-1, 1.5, 2 ** 32, Number.NaN]) {
      expectPyroError(() => encodeFrame({ stream, flags: 0, payload: new Uint8Array(0) }), "PROTOCOL_ERROR");
    }
  });

  test("encodeJsonFrame sets JSON, and END when asked", () => {
    const a = new FrameDecoder().push(encodeJsonFrame(3, { a: 1 }));
    const b = new FrameDecoder().push(encodeJsonFrame(3, { a: 1 }, true));
    expect(a[0]!.flags).toBe(Flag.JSON);
    expect(b[0]!.flags).toBe(Flag.JSON | Flag.END);
    expect(decodeJsonPayload(b[0]!.payload)).toEqual({ a: 1 });
  });
});

describe("flags", () => {
  test("JSON and END bits, channel in the high nibble", () => {
    expect(makeFlags({})).toBe(0);
    expect(makeFlags({ json: true })).toBe(0x01);
    expect(makeFlags({ end: true })).toBe(0x02);
    expect(makeFlags({ json: true, end: true })).toBe(0x03);
    expect(makeFlags({ channel: Channel.STDOUT })).toBe(0x10);
    expect(makeFlags({ channel: Channel.STDERR, end: true })).toBe(0x22);
    expect(makeFlags({ channel: 15, json: true, end: true })).toBe(0xf3);
  });

  test("channelOf reads the nibble back for every channel", () => {
    for (let ch = 0; ch < 16; ch++) {
      for (const json of [false, true]) {
        for (const end of [false, true]) {
          const f = makeFlags({ channel: ch, json, end });
          expect(channelOf(f)).toBe(ch);
          expect(Boolean(f & Flag.JSON)).toBe(json);
          expect(Boolean(f & Flag.END)).toBe(end);
        }
      }
    }
  });

  test("channels outside 0..15 are refused", () => {
    for (const channel of [-1, 16, 1.5, 255]) expectPyroError(() => makeFlags({ channel }), "INVALID_INPUT");
  });

  test("flags survive a round trip unchanged", () => {
    for (let flags = 0; flags < 256; flags++) {
      const [f] = new FrameDecoder().push(encodeFrame({ stream: 9, flags, payload: bytes(flags) }));
      expect(f!.flags).toBe(flags);
      expect([...f!.payload]).toEqual([flags]);
    }
  });
});

describe("FrameDecoder", () => {
  const wire = concat(SAMPLE.map(encodeFrame));

  test("round trip of each frame", () => {
    for (const frame of SAMPLE) {
      const d = new FrameDecoder();
      expect(plain(d.push(encodeFrame(frame)))).toEqual(plain([frame]));
      expect(d.pending).toBe(0);
    }
  });

  test("many frames in one chunk", () => {
    const d = new FrameDecoder();
    expect(plain(d.push(wire))).toEqual(plain(SAMPLE));
    expect(d.pending).toBe(0);
  });

  test("split at every possible byte boundary", () => {
    for (let cut = 0; cut <= wire.byteLength; cut++) {
      const d = new FrameDecoder();
      const got = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))];
      expect(plain(got)).toEqual(plain(SAMPLE));
      expect(d.pending).toBe(0);
    }
  });

  test("split at every pair of boundaries (three chunks)", () => {
    for (let a = 0; a <= wire.byteLength; a++) {
      for (let b = a; b <= wire.byteLength; b += 3) {
        const d = new FrameDecoder();
        const got = [
          ...d.push(wire.subarray(0, a)),
          ...d.push(wire.subarray(a, b)),
          ...d.push(wire.subarray(b)),
        ];
        expect(got.length).toBe(SAMPLE.length);
      }
    }
  });

  test("fed one byte at a time", () => {
    const d = new FrameDecoder();
    const got: Frame[] = [];
    for (let i = 0; i < wire.byteLength; i++) {
      got.push(...d.push(wire.subarray(i, i + 1)));
      expect(d.pending).toBeLessThan(HEADER_BYTES + 64);
    }
    expect(plain(got)).toEqual(plain(SAMPLE));
    expect(d.pending).toBe(0);
  });

  test("pending counts bytes held for an incomplete frame", () => {
    const d = new FrameDecoder();
    const f = encodeFrame({ stream: 1, flags: 0, payload: new Uint8Array(100) });
    expect(d.push(f.subarray(0, 5))).toEqual([]);
    expect(d.pending).toBe(5);
    expect(d.push(f.subarray(5, 50))).toEqual([]);
    expect(d.pending).toBe(50);
    expect(d.push(f.subarray(50))).toHaveLength(1);
    expect(d.pending).toBe(0);
  });

  test("empty chunks are harmless", () => {
    const d = new FrameDecoder();
    expect(d.push(new Uint8Array(0))).toEqual([]);
    expect(d.pending).toBe(0);
    expect(d.push(wire)).toHaveLength(SAMPLE.length);
  });

  test("decoded payloads are copies, not views of the caller's buffer", () => {
    const chunk = encodeFrame({ stream: 1, flags: 0, payload: bytes(1, 2, 3) });
    const [f] = new FrameDecoder().push(chunk);
    chunk.fill(0);
    expect([...f!.payload]).toEqual([1, 2, 3]);
  });

  test("a maximal frame decodes", () => {
    const payload = new Uint8Array(MAX_FRAME_PAYLOAD);
    for (let i = 0; i < payload.length; i += 4096) payload[i] = i & 0xff;
    const frame = encodeFrame({ stream: 2, flags: 0x10, payload });
    const d = new FrameDecoder();
    const half = frame.byteLength >> 1;
    expect(d.push(frame.subarray(0, half))).toEqual([]);
    const [f] = d.push(frame.subarray(half));
    expect(f!.payload.byteLength).toBe(MAX_FRAME_PAYLOAD);
    expect(Buffer.from(f!.payload).equals(Buffer.from(payload))).toBe(true);
  });

  test("a header announcing > MAX_FRAME_PAYLOAD fails with FRAME_TOO_LARGE from the header alone", () => {
    for (const len of [MAX_FRAME_PAYLOAD + 1, 0x7fffffff, 0xffffffff]) {
      const header = new Uint8Array(HEADER_BYTES);
      new DataView(header.buffer).setUint32(0, len);
      const d = new FrameDecoder();
      // Only the 9 header bytes are given: the decoder must not wait for (or allocate) the body.
      const err = expectPyroError(() => d.push(header), "FRAME_TOO_LARGE");
      expect(err.message).toContain(String(len));
      expect(d.pending).toBe(0);
    }
  });

  test("the oversize header is caught even after valid frames in the same chunk", () => {
    const bad = new Uint8Array(HEADER_BYTES);
    new DataView(bad.buffer).setUint32(0, MAX_FRAME_PAYLOAD + 1);
    const d = new FrameDecoder();
    expectPyroError(() => d.push(concat([wire, bad])), "FRAME_TOO_LARGE");
  });

  test("a decoder that failed keeps failing", () => {
    const bad = new Uint8Array(HEADER_BYTES);
    new DataView(bad.buffer).setUint32(0, 0xffffffff);
    const d = new FrameDecoder();
    expectPyroError(() => d.push(bad), "FRAME_TOO_LARGE");
    expectPyroError(() => d.push(wire), "FRAME_TOO_LARGE");
  });

  test("a header split before the length is complete does not fail early", () => {
    const bad = new Uint8Array(HEADER_BYTES);
    new DataView(bad.buffer).setUint32(0, MAX_FRAME_PAYLOAD + 1);
    const d = new FrameDecoder();
    for (let i = 0; i < HEADER_BYTES - 1; i++) expect(d.push(bad.subarray(i, i + 1))).toEqual([]);
    expectPyroError(() => d.push(bad.subarray(HEADER_BYTES - 1)), "FRAME_TOO_LARGE");
  });
});

describe("decodeJsonPayload", () => {
  test("parses UTF-8 JSON of any type", () => {
    expect(decodeJsonPayload(enc.encode('{"a":[1,"é",null]}'))).toEqual({ a: [1, "é", null] });
    expect(decodeJsonPayload(enc.encode("3"))).toBe(3);
    expect(decodeJsonPayload(enc.encode("null"))).toBeNull();
  });

  test("invalid JSON or invalid UTF-8 is PROTOCOL_ERROR", () => {
    const bad = [
      enc.encode(""),
      enc.encode("{"),
      enc.encode("{'a':1}"),
      enc.encode("undefined"),
      bytes(0xff, 0xfe),
      bytes(0x22, 0xc3, 0x28, 0x22), // "\xc3(" : broken UTF-8 inside a string
      bytes(0x22, 0xed, 0xa0, 0x80, 0x22), // an encoded surrogate
    ];
    for (const payload of bad) expectPyroError(() => decodeJsonPayload(payload), "PROTOCOL_ERROR");
  });
});
