/**
 * Redaction of secret values: every place pyro shows or keeps text a command could have
 * produced (exec output attached and spooled, shell output, service logs, errors, command
 * history, summary, `workspace logs`) passes it through a Redactor built from the
 * workspace's secrets (src/manager/secrets.ts). Where it runs: in the supervisor, which every
 * client's call goes through (so CLI, SDK and MCP see the same), and in the manager for what
 * it reads from files the supervisor did not write (the console log).
 *
 * Each value is replaced by `[REDACTED:NAME]` in these forms (longest match first):
 * - the value itself, and the value JSON-escaped and URL-encoded (%XX; also + for spaces);
 * - its base64, standard and URL-safe, with and without padding, of the value and of the
 *   value followed by a newline (`echo $TOKEN | base64`);
 * - the base64 characters that depend on the value alone at each of the 3 byte alignments,
 *   when at least MIN_CORE_CHARS long (the value inside a longer base64 text).
 * Not caught: other encodings (hex, gzip, base64 wrapped across lines, a value printed in
 * pieces). Secrets are for the workspace's own use; a process that wants to leak one can.
 *
 * Invariants:
 * - Patterns are matched on bytes, so binary output is redacted too (and stays binary).
 * - A stream (StreamRedactor) holds back only a suffix that is a prefix of some pattern, so a
 *   value split across two chunks is still caught, and output that cannot start a value is
 *   never delayed; flush() at the stream's end releases what is held (redacted).
 */
import { PyroError, toPyroError } from "../protocol/errors.ts";

export interface SecretValue {
  name: string;
  value: string;
}

/** Alignment cores shorter than this are not redacted (they match innocent base64 text). */
const MIN_CORE_CHARS = 6;

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Pattern {
  bytes: Uint8Array;
  label: Uint8Array;
}

/** Every text form of `value` that is redacted (see the header). */
export function secretForms(value: string): string[] {
  const forms = new Set<string>([value]);
  forms.add(JSON.stringify(value).slice(1, -1));
  const url = encodeURIComponent(value);
  forms.add(url);
  forms.add(url.replaceAll("%20", "+"));
  const raw = Buffer.from(value, "utf8");
  for (const bytes of [raw, Buffer.concat([raw, Buffer.from("\n")])]) {
    for (const alphabet of ["base64", "base64url"] as const) {
      const full = bytes.toString(alphabet);
      forms.add(full);
      forms.add(full.replace(/=+$/, ""));
    }
  }
  // The characters of base64 text that encode bits of the value only, at each alignment.
  for (const k of [0, 1, 2]) {
    const padded = Buffer.concat([Buffer.alloc(k), raw]);
    const from = Math.ceil((8 * k) / 6);
    const to = Math.floor((8 * (k + raw.length)) / 6);
    for (const alphabet of ["base64", "base64url"] as const) {
      const core = padded.toString(alphabet).slice(from, to);
      if (core.length >= MIN_CORE_CHARS) forms.add(core);
    }
  }
  return [...forms].filter((f) => f.length > 0);
}

export class Redactor {
  /** patterns by their first byte, longest first */
  private readonly byFirst = new Map<number, Pattern[]>();
  /** 1 for each byte some pattern starts with (the scan skips other bytes fast) */
  private readonly starts = new Uint8Array(256);
  readonly names: string[];

  private constructor(secrets: SecretValue[]) {
    this.names = secrets.map((s) => s.name);
    const all: Pattern[] = [];
    for (const s of secrets) {
      const label = enc.encode(`[REDACTED:${s.name}]`);
      for (const form of secretForms(s.value)) all.push({ bytes: enc.encode(form), label });
    }
    all.sort((a, b) => b.bytes.length - a.bytes.length);
    for (const p of all) {
      const first = p.bytes[0] as number;
      const list = this.byFirst.get(first) ?? [];
      list.push(p);
      this.byFirst.set(first, list);
      this.starts[first] = 1;
    }
  }

  /** A redactor for these secrets, or null when there are none (nothing to do). */
  static of(secrets: SecretValue[]): Redactor | null {
    return secrets.length ? new Redactor(secrets) : null;
  }

  /**
   * Redact `buf`. Not final: a suffix that could begin a pattern is returned as `rest` (to be
   * put before the next chunk); final: everything is decided now.
   */
  scan(buf: Uint8Array, final: boolean): { out: Uint8Array; rest: Uint8Array } {
    const parts: Uint8Array[] = [];
    let emitFrom = 0;
    let i = 0;
    let held = -1;
    const starts = this.starts;
    outer: while (i < buf.length) {
      if (starts[buf[i] as number] === 0) {
        i++;
        continue;
      }
      const cands = this.byFirst.get(buf[i] as number);
      if (cands) {
        for (const p of cands) {
          const n = p.bytes.length;
          if (i + n <= buf.length) {
            if (equalAt(buf, i, p.bytes, n)) {
              if (i > emitFrom) parts.push(buf.subarray(emitFrom, i));
              parts.push(p.label);
              i += n;
              emitFrom = i;
              continue outer;
            }
          } else if (!final && equalAt(buf, i, p.bytes, buf.length - i)) {
            held = i; // a longer form may complete with the next chunk
            break outer;
          }
        }
      }
      i++;
    }
    const end = held >= 0 ? held : buf.length;
    if (end > emitFrom) parts.push(buf.subarray(emitFrom, end));
    return { out: concat(parts), rest: held >= 0 ? buf.slice(held) : new Uint8Array(0) };
  }

  bytes(buf: Uint8Array): Uint8Array {
    return this.scan(buf, true).out;
  }

  text(s: string): string {
    return dec.decode(this.bytes(enc.encode(s)));
  }

  /** Every string inside a JSON-like value, redacted. */
  value<T>(x: T): T {
    if (typeof x === "string") return this.text(x) as T;
    if (Array.isArray(x)) return x.map((e) => this.value(e)) as T;
    if (x && typeof x === "object")
      return Object.fromEntries(Object.entries(x).map(([k, e]) => [k, this.value(e)])) as T;
    return x;
  }

  /** An error with its message, details and hint redacted. */
  error(err: unknown): PyroError {
    const e = toPyroError(err);
    return new PyroError(e.code, this.text(e.message), {
      details: e.details === undefined ? undefined : this.value(e.details),
      hint: e.hint === undefined ? undefined : this.text(e.hint),
    });
  }

  stream(): StreamRedactor {
    return new StreamRedactor(this);
  }
}

/** One output stream's redaction across chunks (see the header). */
export class StreamRedactor {
  private rest: Uint8Array = new Uint8Array(0);
  constructor(private readonly r: Redactor) {}

  push(chunk: Uint8Array): Uint8Array {
    const buf = this.rest.length ? concat([this.rest, chunk]) : chunk;
    const { out, rest } = this.r.scan(buf, false);
    this.rest = rest;
    return out;
  }

  /** The end of the stream: what was held, redacted. */
  flush(): Uint8Array {
    if (!this.rest.length) return this.rest;
    const out = this.r.bytes(this.rest);
    this.rest = new Uint8Array(0);
    return out;
  }
}

function equalAt(buf: Uint8Array, at: number, p: Uint8Array, n: number): boolean {
  for (let j = 0; j < n; j++) if (buf[at + j] !== p[j]) return false;
  return true;
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
