/**
 * A small deterministic fuzzer. Case i of a run is a pure function of (seed, i, the target's
 * seed inputs), so any case can be regenerated from its index alone: that is how a case that
 * hangs is recovered after its worker is killed. Cases are mutations of valid inputs (bit
 * flips, interesting bytes, dictionary tokens, span deletes/duplicates, truncation, splices,
 * line edits and numbers rewritten for text; the target may add structure-aware mutations)
 * plus about one in ten built from random tokens and bytes.
 *
 * A target says what a case does and what failure is allowed: a PyroError with any code but
 * INTERNAL is the module rejecting bad input; anything else thrown is a crash.
 */
import { PyroError } from "../../src/protocol/errors.ts";

export type Rng = () => number;

export interface FuzzTarget {
  name: string;
  /** Valid inputs to mutate (built once per process). */
  seeds(): Promise<Uint8Array[]>;
  /** Tokens that mean something to the parser (inserted by mutations and random cases). */
  dictionary: string[];
  /** Text inputs get line-aware mutations too. */
  text: boolean;
  /** Optional structure-aware mutation, applied after the generic ones. */
  mutate?(input: Uint8Array, rng: Rng): Uint8Array;
  /** Runs one case; throws what the code under test throws. `index` lets a target sample. */
  run(input: Uint8Array, index: number): Promise<void>;
  /** Per-process setup and teardown (temp roots). */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
}

/** xorshift32 seeded from (seed, index): independent streams per case. */
export function caseRng(seed: number, index: number): Rng {
  let s = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35)) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

const enc = new TextEncoder();
const INTERESTING = [
  0, 0xff, 0x7f, 0x80, 0x20, 0x0a, 0x0d, 0x2f, 0x2e, 0x30, 0x37, 0x39, 0x2b, 0x2d, 0x40, 0x5c, 0x22,
];
const NUMBERS = [
  "0",
  "1",
  "-1",
  "4294967296",
  "9007199254740993",
  "99999999999999999999",
  "077777777777",
  "1e9",
  "",
];

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T;
const int = (rng: Rng, n: number) => Math.floor(rng() * n);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function mutateLines(input: Uint8Array, rng: Rng, dictionary: string[]): Uint8Array {
  const lines = Buffer.from(input).toString("latin1").split("\n");
  const i = int(rng, lines.length);
  switch (int(rng, 5)) {
    case 0: // swap two lines
      [lines[i], lines[int(rng, lines.length)]] = [lines[int(rng, lines.length)] ?? "", lines[i] ?? ""];
      break;
    case 1: // duplicate a line
      lines.splice(i, 0, lines[i] ?? "");
      break;
    case 2: // drop a line
      lines.splice(i, 1);
      break;
    case 3: // rewrite the numbers of a line
      lines[i] = (lines[i] ?? "").replace(/\d+/g, () => pick(rng, NUMBERS));
      break;
    default: // prefix a line with a token
      lines[i] = pick(rng, dictionary) + (lines[i] ?? "");
  }
  return new Uint8Array(Buffer.from(lines.join("\n"), "latin1"));
}

function mutateBytes(input: Uint8Array, rng: Rng, seeds: Uint8Array[], dictionary: string[]): Uint8Array {
  const b = new Uint8Array(input);
  const at = () => int(rng, b.length + 1);
  switch (int(rng, 8)) {
    case 0: {
      for (let k = 1 + int(rng, 4); k > 0 && b.length > 0; k--) {
        const j = int(rng, b.length);
        b[j] = (b[j] as number) ^ (1 << int(rng, 8));
      }
      return b;
    }
    case 1:
      if (b.length > 0) b[int(rng, b.length)] = pick(rng, INTERESTING);
      return b;
    case 2: {
      const j = at();
      return concat(b.subarray(0, j), enc.encode(pick(rng, dictionary)), b.subarray(j));
    }
    case 3: {
      const j = at();
      return concat(b.subarray(0, j), b.subarray(Math.min(b.length, j + 1 + int(rng, 64))));
    }
    case 4: {
      const j = at();
      const span = b.subarray(j, j + 1 + int(rng, 512));
      return concat(b.subarray(0, j), span, span, b.subarray(j));
    }
    case 5:
      return b.subarray(0, at());
    case 6: {
      const other = pick(rng, seeds);
      return concat(b.subarray(0, at()), other.subarray(int(rng, other.length + 1)));
    }
    default:
      return b;
  }
}

/** Case `index` of a run: deterministic in (seed, index, seeds). */
export function generateCase(
  target: FuzzTarget,
  seeds: Uint8Array[],
  seed: number,
  index: number,
): Uint8Array {
  const rng = caseRng(seed, index);
  if (rng() < 0.1) {
    const parts: Uint8Array[] = [];
    for (let k = 1 + int(rng, 40); k > 0; k--) {
      if (rng() < 0.7) parts.push(enc.encode(pick(rng, target.dictionary)));
      else parts.push(Uint8Array.from({ length: 1 + int(rng, 16) }, () => int(rng, 256)));
    }
    return concat(...parts);
  }
  let input = pick(rng, seeds);
  for (let k = 1 + int(rng, 3); k > 0; k--) {
    const r = rng();
    if (target.mutate && r < 0.4) input = target.mutate(input, rng);
    else if (target.text && r < 0.65) input = mutateLines(input, rng, target.dictionary);
    else input = mutateBytes(input, rng, seeds, target.dictionary);
  }
  return input;
}

/** null when the error is the module rejecting input; else a description of the crash. */
export function crashOf(err: unknown): string | null {
  if (err instanceof PyroError && err.code !== "INTERNAL") return null;
  const e = err as Error;
  return `${e?.constructor?.name ?? typeof err}: ${e?.message ?? String(err)}\n${(e?.stack ?? "").split("\n").slice(1, 6).join("\n")}`;
}

export const b64 = (u: Uint8Array) => Buffer.from(u).toString("base64");
export const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
