/**
 * Seeded fuzzing of the wire: the frame decoder on its own (>= 100,000 cases), then the
 * whole stack (Connection + the agent's dispatcher) fed random frames over channelPair().
 *
 * The seed is in the test names; reproduce a failure with PYRO_FUZZ_SEED=<seed>. Every
 * failure message names the case number too.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { parseResult } from "../src/protocol/call.ts";
import { channelPair } from "../src/protocol/channels.ts";
import type { Connection } from "../src/protocol/connection.ts";
import { ERROR_CODES, PyroError } from "../src/protocol/errors.ts";
import {
  decodeJsonPayload,
  encodeFrame,
  Flag,
  type Frame,
  FrameDecoder,
  HEADER_BYTES,
  MAX_FRAME_PAYLOAD,
  makeFlags,
} from "../src/protocol/frame.ts";
import { type AgentOp, ExecStarted, Request } from "../src/protocol/messages.ts";
import { PROTOCOL_VERSION } from "../src/protocol/version.ts";
import { serveChannel } from "./server.ts";

const DEFAULT_SEED = 0x5eed_2024;
const SEED = parseSeed(process.env.PYRO_FUZZ_SEED);

function parseSeed(raw: string | undefined): number {
  if (!raw) return DEFAULT_SEED;
  const n = Number(raw); // decimal or 0x...
  if (!Number.isSafeInteger(n))
    throw new Error(`PYRO_FUZZ_SEED must be an integer, got ${JSON.stringify(raw)}`);
  return n >>> 0;
}
const DECODER_CASES = 120_000;
const STACK_CASES = 2_000;
/** A hang guard for slow machines, not a timing assertion. */
const FUZZ_TIMEOUT_MS = 240_000;

/** mulberry32: small, fast, good enough to spread cases; fully determined by the seed. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** integer in [0, n) */
  int(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const x = this.u32();
      out[i] = x;
      if (i + 1 < n) out[i + 1] = x >>> 8;
      if (i + 2 < n) out[i + 2] = x >>> 16;
      if (i + 3 < n) out[i + 3] = x >>> 24;
    }
    return out;
  }
  /** Mostly small sizes, sometimes larger, rarely big. */
  size(): number {
    const r = this.int(100);
    if (r < 70) return this.int(32);
    if (r < 95) return this.int(600);
    return this.int(5000);
  }
}

const enc = new TextEncoder();

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Random JSON value: nesting, unicode (including astral and lone-surrogate-free text), numbers. */
function randomJson(rng: Rng, depth = 0): unknown {
  const r = rng.int(depth > 3 ? 5 : 8);
  switch (r) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick([0, -1, 1.5, 2 ** 53, -(2 ** 31), 1e308, rng.u32(), rng.int(100)]);
    case 3:
    case 4:
      return randomString(rng);
    case 5:
    case 6: {
      const o: Record<string, unknown> = {};
      const n = rng.int(5);
      for (let i = 0; i < n; i++) o[randomKey(rng)] = randomJson(rng, depth + 1);
      return o;
    }
    default:
      return Array.from({ length: rng.int(5) }, () => randomJson(rng, depth + 1));
  }
}

const KEYS = [
  "op",
  "path",
  "command",
  "argv",
  "type",
  "code",
  "signal",
  "__proto__",
  "constructor",
  "",
  "é",
  "a b",
];
function randomKey(rng: Rng): string {
  return rng.chance(0.5) ? rng.pick(KEYS) : randomString(rng);
}

function randomString(rng: Rng): string {
  const alphabets = ["abcxyz", "0123456789", ' \t\n"\\/', "éß中😀", "\u0000\u001f\u007f\u2028"];
  const n = rng.int(12);
  let s = "";
  for (let i = 0; i < n; i++) {
    const a = rng.pick(alphabets);
    const chars = [...a];
    s += rng.pick(chars);
  }
  return s;
}

/** Bytes that are (probably) not valid UTF-8 JSON. */
function randomNonJson(rng: Rng): Uint8Array {
  switch (rng.int(5)) {
    case 0:
      return rng.bytes(rng.size());
    case 1: {
      const text = JSON.stringify(randomJson(rng));
      return enc.encode(text.slice(0, Math.max(0, text.length - 1 - rng.int(3))));
    }
    case 2:
      return concat([
        enc.encode('{"op":"'),
        Uint8Array.of(rng.pick([0xc3, 0xed, 0xff, 0x80])),
        enc.encode('"}'),
      ]);
    case 3:
      return enc.encode(rng.pick(["{'op':'ping'}", "undefined", "NaN", "{op:1}", "[1,]", "", " ", "\u0000"]));
    default:
      return enc.encode(`${JSON.stringify(randomJson(rng))}${rng.pick(["}", "]", ",", "x", " 1"])}`);
  }
}

function randomFrame(rng: Rng): Frame {
  const json = rng.chance(0.5);
  const payload = json
    ? rng.chance(0.7)
      ? enc.encode(JSON.stringify(randomJson(rng)))
      : randomNonJson(rng)
    : rng.bytes(rng.size());
  return {
    stream: rng.chance(0.8) ? rng.int(16) : rng.u32(),
    flags: rng.chance(0.8) ? makeFlags({ json, end: rng.chance(0.3), channel: rng.int(3) }) : rng.int(256),
    payload,
  };
}

/**
 * Split bytes into random chunks. 1-byte feeding is kept to short inputs: the decoder
 * copies what it holds on every push, so byte-at-a-time feeding is quadratic in the
 * frame size (fine for the wire, too slow for 100k cases).
 */
function chunkings(rng: Rng, bytes: Uint8Array): Uint8Array[] {
  const mode = rng.int(4);
  if (mode === 0 || bytes.byteLength === 0) return [bytes];
  const out: Uint8Array[] = [];
  let off = 0;
  const small = bytes.byteLength <= 256 ? 1 : Math.ceil(bytes.byteLength / 64);
  while (off < bytes.byteLength) {
    const n =
      mode === 1
        ? small
        : mode === 2
          ? rng.range(small, small + 15)
          : rng.range(1, Math.max(1, Math.ceil(bytes.byteLength / 3)));
    out.push(bytes.subarray(off, off + n));
    off += n;
  }
  if (rng.chance(0.2)) out.splice(rng.int(out.length + 1), 0, new Uint8Array(0));
  return out;
}

type CaseKind =
  | "random-bytes"
  | "truncated"
  | "corrupt-header"
  | "oversize"
  | "json-payloads"
  | "big-frame"
  | "mixed";
const KINDS: CaseKind[] = [
  "random-bytes",
  "truncated",
  "corrupt-header",
  "oversize",
  "json-payloads",
  "mixed",
];

class FuzzFailure extends Error {}

function check(cond: boolean, caseNo: number, kind: string, what: string): void {
  if (!cond) throw new FuzzFailure(`seed ${SEED} case ${caseNo} (${kind}): ${what}`);
}

/**
 * Feed chunks; returns decoded frames and the error (if any). Any non-PyroError escapes as
 * a test failure; the pending bound is checked after every chunk.
 */
function feed(
  d: FrameDecoder,
  chunks: Uint8Array[],
  caseNo: number,
  kind: string,
): { frames: Frame[]; error: PyroError | null; fedBytes: number } {
  const frames: Frame[] = [];
  let fedBytes = 0;
  for (const c of chunks) {
    try {
      frames.push(...d.push(c));
    } catch (err) {
      check(err instanceof PyroError, caseNo, kind, `decoder threw a non-PyroError: ${String(err)}`);
      check(
        (err as PyroError).code === "FRAME_TOO_LARGE",
        caseNo,
        kind,
        `unexpected code ${(err as PyroError).code}`,
      );
      // once failed, it keeps failing the same way
      let again: unknown = null;
      try {
        d.push(Uint8Array.of(0));
      } catch (e) {
        again = e;
      }
      check(again === err, caseNo, kind, "a failed decoder must keep throwing its error");
      return { frames, error: err as PyroError, fedBytes };
    }
    fedBytes += c.byteLength;
    check(d.pending <= HEADER_BYTES + MAX_FRAME_PAYLOAD, caseNo, kind, `pending ${d.pending} over the bound`);
    check(d.pending <= fedBytes, caseNo, kind, "pending more bytes than were fed");
  }
  return { frames, error: null, fedBytes };
}

/** JSON payloads either decode to the same value or fail with PROTOCOL_ERROR. */
function checkJsonFrames(frames: Frame[], caseNo: number, kind: string): void {
  for (const f of frames) {
    if (!(f.flags & Flag.JSON)) continue;
    try {
      decodeJsonPayload(f.payload);
    } catch (err) {
      check(
        err instanceof PyroError,
        caseNo,
        kind,
        `decodeJsonPayload threw a non-PyroError: ${String(err)}`,
      );
      check(
        (err as PyroError).code === "PROTOCOL_ERROR",
        caseNo,
        kind,
        `decodeJsonPayload code ${(err as PyroError).code}`,
      );
    }
  }
}

function frameEq(a: Frame, b: Frame): boolean {
  return a.stream === b.stream && (a.flags & 0xff) === b.flags && sameBytes(a.payload, b.payload);
}

function runDecoderCase(rng: Rng, caseNo: number, kind: CaseKind): void {
  const d = new FrameDecoder();
  switch (kind) {
    case "random-bytes": {
      const bytes = rng.bytes(rng.chance(0.9) ? rng.size() : rng.int(20_000));
      const { frames } = feed(d, chunkings(rng, bytes), caseNo, kind);
      checkJsonFrames(frames, caseNo, kind);
      return;
    }
    case "truncated":
    case "mixed": {
      const originals = Array.from({ length: rng.range(1, 6) }, () => randomFrame(rng));
      const wire = concat(originals.map(encodeFrame));
      const cut = kind === "truncated" ? rng.int(wire.byteLength + 1) : wire.byteLength;
      const { frames, error } = feed(d, chunkings(rng, wire.subarray(0, cut)), caseNo, kind);
      check(error === null, caseNo, kind, "valid frames must not fail");
      // exactly the frames wholly inside the cut, in order, intact
      let whole = 0;
      let off = 0;
      for (const f of originals) {
        off += HEADER_BYTES + f.payload.byteLength;
        if (off <= cut) whole++;
      }
      check(frames.length === whole, caseNo, kind, `decoded ${frames.length} frames, want ${whole}`);
      frames.forEach((f, i) => {
        check(frameEq(originals[i]!, f), caseNo, kind, `frame ${i} differs`);
      });
      const consumed = originals.slice(0, whole).reduce((n, f) => n + HEADER_BYTES + f.payload.byteLength, 0);
      check(d.pending === cut - consumed, caseNo, kind, `pending ${d.pending}, want ${cut - consumed}`);
      checkJsonFrames(frames, caseNo, kind);
      return;
    }
    case "corrupt-header": {
      const originals = Array.from({ length: rng.range(1, 4) }, () => randomFrame(rng));
      const wire = concat(originals.map(encodeFrame));
      // corrupt bytes inside some frame's header: length, stream id or flags
      const target = rng.int(originals.length);
      const start = originals.slice(0, target).reduce((n, f) => n + HEADER_BYTES + f.payload.byteLength, 0);
      const nFlips = rng.range(1, 3);
      for (let i = 0; i < nFlips; i++) {
        const at = start + rng.int(HEADER_BYTES);
        wire[at] = rng.chance(0.5) ? wire[at]! ^ (1 << rng.int(8)) : rng.int(256);
      }
      const { frames, error } = feed(d, chunkings(rng, wire), caseNo, kind);
      // frames before the corrupted one are intact either way
      for (let i = 0; i < Math.min(target, frames.length); i++) {
        check(frameEq(originals[i]!, frames[i]!), caseNo, kind, `frame ${i} before the corruption differs`);
      }
      if (error === null)
        check(frames.length >= Math.min(target, originals.length), caseNo, kind, "lost intact frames");
      checkJsonFrames(frames, caseNo, kind);
      return;
    }
    case "oversize": {
      const before = Array.from({ length: rng.int(3) }, () => randomFrame(rng));
      const header = new Uint8Array(HEADER_BYTES + rng.int(64));
      const dv = new DataView(header.buffer);
      const len = rng.chance(0.3)
        ? rng.pick([MAX_FRAME_PAYLOAD + 1, 0xffffffff, 0x80000000])
        : MAX_FRAME_PAYLOAD + 1 + rng.int(0xffffffff - MAX_FRAME_PAYLOAD);
      dv.setUint32(0, len);
      dv.setUint32(4, rng.u32());
      dv.setUint8(8, rng.int(256));
      const wire = concat([...before.map(encodeFrame), header]);
      const { error } = feed(d, chunkings(rng, wire), caseNo, kind);
      check(
        error !== null && error.code === "FRAME_TOO_LARGE",
        caseNo,
        kind,
        `length ${len} was not refused`,
      );
      check(d.pending === 0, caseNo, kind, "a failed decoder must hold nothing");
      return;
    }
    case "json-payloads": {
      const values = Array.from({ length: rng.range(1, 4) }, () => randomJson(rng));
      const frames: Frame[] = values.map((value, i) => ({
        stream: i,
        flags: makeFlags({ json: true, end: rng.chance(0.5) }),
        payload: rng.chance(0.6) ? enc.encode(JSON.stringify(value)) : randomNonJson(rng),
      }));
      const got = feed(d, chunkings(rng, concat(frames.map(encodeFrame))), caseNo, kind);
      check(
        got.error === null && got.frames.length === frames.length,
        caseNo,
        kind,
        "JSON frames must all decode",
      );
      got.frames.forEach((f, i) => {
        let text: string | null = null;
        try {
          text = JSON.stringify(decodeJsonPayload(f.payload));
        } catch (err) {
          check(
            err instanceof PyroError && err.code === "PROTOCOL_ERROR",
            caseNo,
            kind,
            `bad JSON threw ${String(err)}`,
          );
        }
        // a payload we encoded from a value must decode back to it
        const encodedFrom = enc.encode(JSON.stringify(values[i]));
        if (sameBytes(encodedFrom, frames[i]!.payload)) {
          check(text === JSON.stringify(values[i]), caseNo, kind, "JSON payload did not round trip");
        }
      });
      return;
    }
    case "big-frame": {
      // near the size limit, fed in a few large chunks (the decoder concatenates per push)
      const payload = rng.bytes(MAX_FRAME_PAYLOAD - rng.int(1000));
      const wire = encodeFrame({ stream: rng.u32(), flags: rng.int(256), payload });
      const parts: Uint8Array[] = [];
      for (let off = 0; off < wire.byteLength; ) {
        const n = rng.range(1, 300_000);
        parts.push(wire.subarray(off, off + n));
        off += n;
      }
      const { frames, error } = feed(d, parts, caseNo, kind);
      check(error === null && frames.length === 1, caseNo, kind, "big frame did not decode");
      check(sameBytes(frames[0]!.payload, payload), caseNo, kind, "big frame payload differs");
      return;
    }
  }
}

describe(`fuzz (seed ${SEED}; override with PYRO_FUZZ_SEED)`, () => {
  test(
    `FrameDecoder: ${DECODER_CASES} random cases never throw anything but PyroError (seed ${SEED})`,
    () => {
      const rng = new Rng(SEED);
      const counts: Record<string, number> = {};
      for (let i = 0; i < DECODER_CASES; i++) {
        const kind: CaseKind = i % 5000 === 4999 ? "big-frame" : rng.pick(KINDS);
        counts[kind] = (counts[kind] ?? 0) + 1;
        runDecoderCase(rng, i, kind);
      }
      expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(DECODER_CASES);
      for (const k of [...KINDS, "big-frame"]) expect(counts[k]).toBeGreaterThan(0);
    },
    FUZZ_TIMEOUT_MS,
  );

  describe(`whole stack: Connection + agent dispatcher, ${STACK_CASES} cases (seed ${SEED})`, () => {
    let parent: string;
    let root: string;
    beforeAll(() => {
      // The root sits inside a private parent: even a path bug could only touch our own dir.
      parent = mkdtempSync(join(tmpdir(), "pyro-fuzz-"));
      root = join(parent, "root");
      mkdirSync(root);
    });
    afterAll(() => {
      rmSync(parent, { recursive: true, force: true });
    });

    // bun test fails the running test on any uncaught exception or unhandled rejection, so
    // anything escaping the event loop from the connection or the agent fails this test.
    test(
      `random frames never escape the event loop or hang (seed ${SEED})`,
      async () => {
        const rng = new Rng(SEED ^ 0xa5a5a5a5);
        const stats = { results: 0, errors: 0, closes: 0, invalid: 0, ops: {} as Record<string, number> };
        const CONCURRENCY = 8;
        for (let base = 0; base < STACK_CASES; base += CONCURRENCY) {
          // build scripts sequentially (deterministic), run them concurrently
          const scripts = Array.from({ length: Math.min(CONCURRENCY, STACK_CASES - base) }, (_, i) =>
            makeScript(rng, base + i),
          );
          const outcomes = await Promise.all(scripts.map((s) => runStackCase(s, root)));
          for (const o of outcomes) {
            stats.results += o.results;
            stats.errors += o.errors;
            stats.invalid += o.invalid;
            if (o.closed) stats.closes++;
            for (const [k, n] of Object.entries(o.ops)) stats.ops[k] = (stats.ops[k] ?? 0) + n;
          }
        }
        const { ops, ...totals } = stats;
        console.log(
          `stack fuzz seed ${SEED}: ${STACK_CASES} cases, ${JSON.stringify(totals)}, ${Object.keys(ops).length} op/outcome pairs`,
        );
        // the generator must have exercised every outcome
        expect(stats.results).toBeGreaterThan(0);
        expect(stats.errors).toBeGreaterThan(0);
        expect(stats.invalid).toBeGreaterThan(0);
        expect(stats.closes).toBeGreaterThan(0);
      },
      FUZZ_TIMEOUT_MS,
    );
  });
});

// ---------------------------------------------------------------------------------------
// Stack-level fuzz

type Step =
  /** a request opening stream `id`; `input` then END follow unless `end` is on the opening frame */
  | { kind: "request"; id: number; request: Record<string, unknown>; end: boolean; input: Uint8Array[] }
  /** a JSON object on an already opened stream (signal or random) */
  | { kind: "control"; id: number; message: Record<string, unknown> }
  /** a data frame for a stream that was never opened (must be ignored) */
  | { kind: "stray-data"; frame: Frame }
  /** framing errors: the connection must be dropped */
  | { kind: "fatal"; bytes: Uint8Array; why: string }
  /** random garbage at the end: anything but an escape or a hang is fine */
  | { kind: "garbage"; bytes: Uint8Array };

interface Script {
  caseNo: number;
  steps: Step[];
  chunking: number;
}

const SAFE_WORDS = ["a", "b", "c", "sub", "x y", "é"];

function relPath(rng: Rng, allowUp: boolean): string {
  const n = rng.range(1, 3);
  const parts = Array.from({ length: n }, () => rng.pick(SAFE_WORDS));
  if (allowUp && rng.chance(0.15)) parts.splice(rng.int(parts.length + 1), 0, "..");
  if (rng.chance(0.1)) parts.splice(rng.int(parts.length + 1), 0, ".");
  const p = parts.join("/");
  return rng.chance(0.3) ? `/workspace/${p}` : p;
}

/** Paths for operations that only look: may point anywhere. */
function lookPath(rng: Rng): string {
  return rng.chance(0.85)
    ? relPath(rng, true)
    : rng.pick(["/", "/etc", "/etc/hostname", "../..", "/workspace", "//workspace/a", ""]);
}

function validRequest(rng: Rng): { request: Record<string, unknown>; input: Uint8Array[] } {
  const data = () => Array.from({ length: rng.int(3) }, () => rng.bytes(rng.size()));
  switch (rng.int(16)) {
    case 0:
      return { request: { op: "ping" }, input: [] };
    case 1:
      return { request: { op: "info" }, input: [] };
    case 2:
      return {
        request: {
          op: "hello",
          protocol_version: rng.chance(0.7) ? PROTOCOL_VERSION : rng.int(5),
          host_version: randomString(rng),
          ...(rng.chance(0.5) ? { config: { hostname: "h", env: { PYRO_FUZZ: randomString(rng) } } } : {}),
        },
        input: [],
      };
    case 3: {
      const pick = rng.int(5);
      const exec: Record<string, unknown> = { op: "exec" };
      if (pick === 0) exec.argv = ["true"];
      else if (pick === 1) exec.argv = ["echo", rng.pick(SAFE_WORDS)];
      else if (pick === 2) exec.command = `echo ${rng.pick(["a", "b", "$HOME", "x y"])}; exit ${rng.int(4)}`;
      else if (pick === 3) exec.argv = ["pyro-fuzz-no-such-command"];
      else {
        exec.argv = ["cat"];
        exec.stdin = true;
      }
      if (rng.chance(0.3)) exec.max_output_bytes = rng.int(8);
      if (rng.chance(0.2)) exec.cwd = lookPath(rng);
      if (rng.chance(0.2)) exec.env = { FUZZ: randomString(rng) };
      if (rng.chance(0.2)) exec.timeout_ms = rng.range(1, 2000);
      return { request: exec, input: exec.stdin ? data() : [] };
    }
    case 4:
      return { request: { op: "fs.stat", path: lookPath(rng) }, input: [] };
    case 5:
      return {
        request: { op: "fs.list", path: lookPath(rng), recursive: rng.chance(0.5), max_entries: rng.int(50) },
        input: [],
      };
    case 6:
      return {
        request: { op: "fs.read", path: lookPath(rng), max_bytes: rng.int(5000), offset: rng.int(100) },
        input: [],
      };
    case 7:
    case 8:
      return {
        request: {
          op: "fs.write",
          path: relPath(rng, true),
          ...(rng.chance(0.3) ? { mode: rng.int(0o777) } : {}),
        },
        input: data(),
      };
    case 9:
      return { request: { op: "fs.mkdir", path: relPath(rng, true), parents: rng.chance(0.5) }, input: [] };
    case 10:
      return {
        request: { op: "fs.remove", path: relPath(rng, true), recursive: rng.chance(0.5) },
        input: [],
      };
    case 11:
      return {
        request: {
          op: "fs.move",
          from: relPath(rng, true),
          to: relPath(rng, true),
          overwrite: rng.chance(0.5),
        },
        input: [],
      };
    case 12:
      return { request: { op: "archive.export", path: lookPath(rng) }, input: [] };
    case 13:
      return { request: { op: "archive.import", dest: relPath(rng, true) }, input: [rng.bytes(rng.size())] };
    case 14:
      return { request: { op: "shutdown" }, input: [] };
    default:
      return { request: randomJsonObject(rng), input: data() };
  }
}

function randomJsonObject(rng: Rng): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const n = rng.int(4);
  for (let i = 0; i < n; i++) o[randomKey(rng)] = randomJson(rng, 1);
  if (rng.chance(0.5))
    o.op = rng.chance(0.5) ? rng.pick(["ping", "exec", "fs.read", "signal", "hello"]) : randomJson(rng, 2);
  return JSON.parse(JSON.stringify(o));
}

/** Break a request: extra key, missing key, wrong type, bad op. */
function mutate(rng: Rng, request: Record<string, unknown>): Record<string, unknown> {
  const r: Record<string, unknown> = JSON.parse(JSON.stringify(request));
  const keys = Object.keys(r);
  switch (rng.int(4)) {
    case 0:
      r[rng.pick(["extra", "__proto__", "Op", randomString(rng) || "x"])] = randomJson(rng, 2);
      break;
    case 1:
      if (keys.length) delete r[rng.pick(keys)];
      break;
    case 2:
      if (keys.length) r[rng.pick(keys)] = randomJson(rng, 2);
      break;
    default:
      r.op = rng.pick(["", "PING", "fs.reads", "exec ", "signal", "archive", 7, null]);
  }
  return JSON.parse(JSON.stringify(r));
}

const SAFE_ARGV0 = new Set(["true", "echo", "cat", "pyro-fuzz-no-such-command"]);

/** A mutated request may still parse; never let one run something we did not choose. */
function defuse(request: Record<string, unknown>): Record<string, unknown> {
  if (request.op !== "exec" || !v.safeParse(Request, request).success) return request;
  const r = { ...request };
  if (Array.isArray(r.argv) && !SAFE_ARGV0.has(r.argv[0] as string)) r.argv = ["true"];
  if (typeof r.command === "string" && !/^echo [a-z$HOME ]*; exit [0-3]$|^echo [a-zé ]*$/.test(r.command)) {
    r.command = "true";
  }
  if (typeof r.timeout_ms === "number" && r.timeout_ms > 5000) r.timeout_ms = 5000;
  return r;
}

function makeScript(rng: Rng, caseNo: number): Script {
  const steps: Step[] = [];
  const n = rng.range(1, 4);
  const opened: number[] = [];
  let nextId = rng.range(1, 1000);
  for (let i = 0; i < n; i++) {
    const r = rng.int(100);
    if (r < 62) {
      const { request, input } = validRequest(rng);
      const req = defuse(rng.chance(0.35) ? mutate(rng, request) : request);
      const id = nextId++;
      opened.push(id);
      const end = input.length === 0 && rng.chance(0.5);
      steps.push({ kind: "request", id, request: req, end, input });
    } else if (r < 70 && opened.length > 0) {
      const message: Record<string, unknown> = rng.chance(0.6)
        ? { op: "signal", signal: rng.pick(["SIGTERM", "SIGKILL", "SIGINT", "SIGSTOP", "BOGUS"]) }
        : randomJsonObject(rng);
      steps.push({ kind: "control", id: rng.pick(opened), message });
    } else if (r < 78) {
      steps.push({
        kind: "stray-data",
        frame: {
          stream: 100_000 + rng.int(1000),
          flags: makeFlags({ channel: rng.int(16), end: rng.chance(0.5) }),
          payload: rng.bytes(rng.size()),
        },
      });
    } else if (r < 93) {
      steps.push(fatalStep(rng));
      break; // nothing after a framing error is read
    } else {
      steps.push({ kind: "garbage", bytes: rng.bytes(rng.range(1, 64)) });
      break;
    }
  }
  return { caseNo, steps, chunking: rng.int(3) };
}

function fatalStep(rng: Rng): Step {
  const id = 50_000 + rng.int(1000);
  switch (rng.int(4)) {
    case 0: {
      const h = new Uint8Array(HEADER_BYTES);
      new DataView(h.buffer).setUint32(0, MAX_FRAME_PAYLOAD + 1 + rng.int(0x7fffffff));
      return { kind: "fatal", bytes: h, why: "oversize header" };
    }
    case 1:
      return {
        kind: "fatal",
        bytes: encodeFrame({
          stream: id,
          flags: makeFlags({ json: true, end: rng.chance(0.5) }),
          payload: randomNonJson(rng),
        }),
        why: "invalid JSON opening frame",
      };
    default: {
      let value = randomJson(rng);
      if (value !== null && typeof value === "object" && !Array.isArray(value)) value = [value];
      return {
        kind: "fatal",
        bytes: encodeFrame({
          stream: id,
          flags: makeFlags({ json: true }),
          payload: enc.encode(JSON.stringify(value)),
        }),
        why: "non-object opening frame",
      };
    }
  }
}

function splitForWire(bytes: Uint8Array, chunking: number, salt: number): Uint8Array[] {
  if (chunking === 0) return [bytes];
  const size = chunking === 1 ? 1 + (salt % 7) : 64;
  const out: Uint8Array[] = [];
  for (let off = 0; off < bytes.byteLength; off += size) out.push(bytes.subarray(off, off + size));
  return out;
}

interface StackOutcome {
  /** terminal frames per request op (result or error code) */
  ops: Record<string, number>;
  results: number;
  errors: number;
  invalid: number;
  closed: boolean;
}

async function runStackCase(script: Script, root: string): Promise<StackOutcome> {
  const { caseNo } = script;
  const fail = (what: string): never => {
    throw new FuzzFailure(`seed ${SEED} stack case ${caseNo}: ${what}\nscript: ${describeScript(script)}`);
  };
  const [serverSide, clientSide] = channelPair();
  let server: Connection;
  try {
    server = serveChannel(
      { root, guest: false, baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" } },
      serverSide,
    );
  } catch (err) {
    return fail(`serveChannel threw ${String(err)}`);
  }
  const decoder = new FrameDecoder();
  const received: Frame[] = [];
  let clientClosed = false;
  clientSide.onData((b) => {
    try {
      received.push(...decoder.push(b));
    } catch (err) {
      fail(`the server sent undecodable bytes: ${String(err)}`);
    }
  });
  clientSide.onClose(() => (clientClosed = true));

  const send = (bytes: Uint8Array) => {
    for (const part of splitForWire(bytes, script.chunking, caseNo)) clientSide.write(part);
  };
  const expected = new Map<number, Record<string, unknown>>(); // id → request awaiting a terminal frame
  const usedIds = new Set<number>();
  const lateControls = new Map<number, Record<string, unknown>[]>();
  let fatal: string | null = null;
  let garbage = false;
  for (const step of script.steps) {
    switch (step.kind) {
      case "request": {
        usedIds.add(step.id);
        expected.set(step.id, step.request);
        send(
          encodeFrame({
            stream: step.id,
            flags: makeFlags({ json: true, end: step.end }),
            payload: enc.encode(JSON.stringify(step.request)),
          }),
        );
        if (!step.end) {
          for (const part of step.input) send(encodeFrame({ stream: step.id, flags: 0, payload: part }));
          send(encodeFrame({ stream: step.id, flags: makeFlags({ end: true }), payload: new Uint8Array(0) }));
        }
        break;
      }
      case "control":
        lateControls.set(step.id, [...(lateControls.get(step.id) ?? []), step.message]);
        send(
          encodeFrame({
            stream: step.id,
            flags: makeFlags({ json: true }),
            payload: enc.encode(JSON.stringify(step.message)),
          }),
        );
        break;
      case "stray-data":
        send(encodeFrame(step.frame));
        break;
      case "fatal":
        fatal = step.why;
        send(step.bytes);
        break;
      case "garbage":
        garbage = true;
        send(step.bytes);
        break;
    }
    await Bun.sleep(0);
  }

  const terminal = () => received.filter((f) => f.flags & Flag.JSON && f.flags & Flag.END);
  const done = () => {
    if (fatal) return server.isClosed;
    const ids = new Set(terminal().map((f) => f.stream));
    return [...expected.keys()].every((id) => ids.has(id)) || server.isClosed;
  };
  // Bounded wait: this only turns a hang into a failure, it asserts no timing.
  for (let i = 0; !done(); i++) {
    if (i > 3000)
      fail(`hang: ${fatal ? "connection not dropped" : "no answer"} after ${received.length} frames`);
    await Bun.sleep(i < 50 ? 0 : 5);
  }
  if (fatal && !server.isClosed) fail(`${fatal} did not drop the connection`);
  if (!fatal && !garbage && server.isClosed) fail("the connection was dropped without a framing error");

  // Check every frame the server sent.
  const outcome: StackOutcome = { ops: {}, results: 0, errors: 0, invalid: 0, closed: server.isClosed };
  const finished = new Set<number>();
  for (const f of received) {
    if (!usedIds.has(f.stream)) {
      // trailing garbage may happen to form a whole frame that opens a stream
      if (garbage) continue;
      fail(`frame for stream ${f.stream}, which the client never opened`);
    }
    if (finished.has(f.stream)) {
      // A control message that reached a stream after it finished is read by the server as
      // a new request on that id (Connection forgets finished ids), and answered as such.
      const late = lateControls.get(f.stream)?.shift();
      if (late === undefined) fail(`frame after the terminal frame on stream ${f.stream}`);
      expected.set(f.stream, late!);
      finished.delete(f.stream);
    }
    if (!(f.flags & Flag.JSON)) {
      const ch = f.flags >> 4;
      if (ch !== 1 && ch !== 2) fail(`data on channel ${ch}`);
      if (f.flags & Flag.END) fail("a data frame carried END");
      continue;
    }
    let msg: Record<string, unknown>;
    try {
      msg = decodeJsonPayload(f.payload) as Record<string, unknown>;
    } catch {
      return fail("the server sent invalid JSON");
    }
    if (!(f.flags & Flag.END)) {
      if (!v.is(ExecStarted, msg)) fail(`unexpected non-terminal JSON ${JSON.stringify(msg)}`);
      continue;
    }
    finished.add(f.stream);
    const request = expected.get(f.stream);
    const valid = request !== undefined && v.safeParse(Request, request).success;
    const tag = `${valid ? String(request!.op) : "invalid"}:${msg.type === "error" ? String(msg.code) : "result"}`;
    outcome.ops[tag] = (outcome.ops[tag] ?? 0) + 1;
    if (msg.type === "result") {
      if (!valid) fail(`an invalid request got a result: ${JSON.stringify(request)}`);
      // every result the agent sends passes its op's result schema (what the host checks)
      const { type: _type, ...result } = msg;
      try {
        parseResult(request!.op as AgentOp, result);
      } catch (err) {
        fail(`${(err as Error).message}: ${JSON.stringify(msg)}`);
      }
      outcome.results++;
    } else if (msg.type === "error") {
      outcome.errors++;
      if (!ERROR_CODES.includes(msg.code as never)) fail(`unknown error code ${String(msg.code)}`);
      if (typeof msg.message !== "string") fail("error without a message");
      if (!valid) {
        outcome.invalid++;
        if (msg.code !== "INVALID_INPUT")
          fail(`invalid request answered ${String(msg.code)}, want INVALID_INPUT`);
      }
      if (msg.code === "INTERNAL")
        fail(`INTERNAL error: ${String(msg.message)} for ${JSON.stringify(request)}`);
    } else {
      fail(`terminal frame of type ${String(msg.type)}`);
    }
  }

  // The client goes away: the server must notice and close too (no hang, nothing escapes).
  clientSide.close();
  for (let i = 0; !server.isClosed || !clientClosed; i++) {
    if (i > 2000) fail("the server did not close after the client went away");
    await Bun.sleep(i < 50 ? 0 : 5);
  }
  return outcome;
}

function describeScript(s: Script): string {
  return JSON.stringify(
    s.steps.map((st) =>
      st.kind === "request"
        ? { request: st.request, id: st.id, end: st.end, input: st.input.map((b) => b.byteLength) }
        : st.kind === "control"
          ? { control: st.message, id: st.id }
          : st.kind === "fatal"
            ? { fatal: st.why }
            : { [st.kind]: true },
    ),
  );
}
