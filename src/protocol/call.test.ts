/**
 * The host's decoding of results (call.ts): every op's result is checked where it arrives.
 * Seeded fuzzing feeds random and mutated result objects for every op (agent and `sup.*`) to
 * parseResult, and mutated terminal frames through a real Connection to call(): each must
 * give either a result or PROTOCOL_ERROR naming the op, never a crash, and a result is
 * accepted only when an independent checker (a small JSON Schema validator run on the
 * schema's JSON rendering, the one messages.snapshot.json pins) agrees it is well typed.
 * Reproduce a failure with PYRO_FUZZ_SEED=<seed> (in the test names).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { toJsonSchema } from "@valibot/to-json-schema";
import { Glob } from "bun";
import type * as v from "valibot";
import { CALL_TABLE, type CallOp, call, parseResult, type ResultOf } from "./call.ts";
import { channelPair } from "./channels.ts";
import { Connection } from "./connection.ts";
import { PyroError } from "./errors.ts";

const SEED = Number(process.env.PYRO_FUZZ_SEED ?? 0x5eed_7e57) >>> 0;
const CASES = 20_000;
const STACK_CASES = 1_000;

/** A service record: the result of both sup.service.start and sup.service.stop. */
const SERVICE_RECORD: ResultOf<"sup.service.start"> = {
  service_name: "web",
  state: "ready",
  command: "python3 -m http.server 8000",
  argv: null,
  cwd: null,
  readiness: { type: "http", url: "http://127.0.0.1:8000/" },
  ready_timeout_ms: 30000,
  ready_interval_ms: 500,
  restart: "on-failure",
  stop_grace_ms: 5000,
  publish: [{ guest_port: 8000, host_port: null }],
  published_ports: [{ guest_port: 8000, host_port: 40123, host: "127.0.0.1" }],
  started_at: "2024-01-01T00:00:00.000Z",
  run_started_at: "2024-01-01T00:00:00.000Z",
  ready_at: "2024-01-01T00:00:01.000Z",
  ended_at: null,
  exit_code: 1,
  signal: null,
  restart_count: 1,
  end_reason: null,
  pid: 42,
  supervisor_pid: 7,
  stdout_base: 0,
  stderr_base: 0,
};

/** A valid result of every op (typed: a missing op or a wrong field fails to compile). */
const SAMPLES: { [Op in CallOp]: ResultOf<Op> } = {
  hello: {
    protocol_version: 2,
    agent_version: "0.1.0",
    pid1: true,
    kernel: "6.1.0-pyro",
    boot_id: "b",
    root: "/workspace",
    attached: true,
  },
  ping: { pong: true },
  "clock.set": { previous_offset_ms: -1500, set: true },
  info: {
    agent_version: "0.1.0",
    protocol_version: 2,
    kernel: "6.1.0",
    hostname: "h",
    uptime_s: 3,
    boot_id: "b",
    memory: { total_bytes: 1024, available_bytes: 512 },
    disk: { total_bytes: 10, free_bytes: 5 },
    agent_rss_bytes: 100,
    guest: true,
  },
  shutdown: { shutting_down: true },
  "sys.attach": { boot_id: "b", attached_ms: 120 },
  exec: {
    exit_code: 0,
    signal: null,
    timed_out: false,
    stdout_bytes: 3,
    stderr_bytes: 0,
    stdout_truncated: false,
    stderr_truncated: false,
    duration_ms: 12,
  },
  "exec.kill": { killed: true },
  "fs.stat": {
    path: "/workspace/l",
    artifact_type: "symlink",
    size_bytes: 1,
    mode: "0777",
    mtime: "2024-01-01T00:00:00.000Z",
    link_target: "a",
  },
  "fs.list": {
    path: "/workspace",
    entries: [
      {
        path: "/workspace/a",
        artifact_type: "file",
        size_bytes: 1,
        mode: "0644",
        mtime: "2024-01-01T00:00:00.000Z",
      },
    ],
    truncated: false,
  },
  "fs.read": { path: "/workspace/a", size_bytes: 4, truncated: false, encoding_hint: "utf8", bytes: 4 },
  "fs.write": { path: "/workspace/a", artifact_type: "file", size_bytes: 4, mode: "0644", mtime: "x" },
  "fs.mkdir": {
    path: "/workspace/d",
    artifact_type: "directory",
    size_bytes: 4096,
    mode: "0755",
    mtime: "x",
  },
  "fs.remove": { path: "/workspace/d", artifact_type: "directory", removed: true },
  "fs.move": {
    path: "/workspace/b",
    artifact_type: "file",
    size_bytes: 4,
    mode: "0644",
    mtime: "x",
    moved_from: "/workspace/a",
  },
  "archive.import": { path: "/workspace", files: 2, directories: 1, symlinks: 0, bytes: 2048 },
  "archive.export": { bytes: 10240 },
  "patch.apply": {
    files: [
      { path: "a", status: "modified" },
      { path: "b", status: "renamed", from: "c" },
    ],
    hunks_applied: 2,
    files_truncated: false,
  },
  "baseline.capture": { files: 3, tree: "t", commit: "c" },
  "fs.freeze": { frozen: true, mount: "/run/pyro/data" },
  "fs.thaw": { thawed: true },
  diff: {
    patch_bytes: 100,
    files: [
      {
        path: "a",
        status: "mode_changed",
        binary: false,
        old_mode: "100644",
        new_mode: "100755",
        additions: 0,
        deletions: 0,
      },
    ],
    summary: { files_changed: 1, additions: 0, deletions: 0, binary_files: 0 },
    truncated: false,
    files_truncated: false,
    files_hashed: 1,
  },
  "sup.status": {
    backend: "qemu",
    accelerator: null,
    vmm_pid: 10,
    supervisor_pid: 9,
    kernel: "k",
    boot_id: "b",
    agent_version: "0.1.0",
  },
  "sup.stop": { stopping: true },
  "sup.pause": { pausing: true },
  "sup.delete": { deleting: true },
  "sup.exec.start": { exec_id: "ex_0123456789ab", reused: false },
  "sup.exec.kill": { killed: true },
  "shell.open": { exit_code: 0, signal: null },
  "shell.write": { bytes: 4 },
  "shell.signal": { pgid: 42 },
  "shell.resize": { cols: 80, rows: 24 },
  "shell.close": { closed: true },
  "secrets.set": { count: 1 },
  "service.start": { exit_code: 1, signal: null, ready: true },
  "service.stop": { stopped: true },
  "sys.keep": { kept: 3 },
  "sys.release": { ended: 0 },
  "shell.adopt": { exit_code: 0, signal: null },
  "service.adopt": { exit_code: 0, signal: null, ready: true },
  "exec.adopt": {
    exit_code: 0,
    signal: null,
    timed_out: false,
    stdout_bytes: 3,
    stderr_bytes: 0,
    stdout_truncated: false,
    stderr_truncated: false,
    duration_ms: 12,
  },
  "net.connect": { bytes_in: 5, bytes_out: 7, reset: false },
  "sup.forward.open": { guest_port: 8000, host_port: 41234, host: "127.0.0.1" },
  "sup.forward.close": { closed: true },
  "sup.forward.list": { forwards: [{ guest_port: 8000, host_port: 41234, host: "127.0.0.1" }] },
  "sup.service.start": SERVICE_RECORD,
  "sup.service.stop": SERVICE_RECORD,
  "sup.shell.open": {
    shell_id: "sh_0123456789ab",
    state: "running",
    cwd: "/workspace",
    cols: 120,
    rows: 30,
    started_at: "2024-01-01T00:00:00.000Z",
    ended_at: "2024-01-01T00:00:01.000Z",
    exit_code: 0,
    output_chars: 10,
  },
  "sup.shell.read": {
    ...{
      shell_id: "sh_0123456789ab",
      state: "running",
      cwd: "/workspace",
      cols: 120,
      rows: 30,
      started_at: "2024-01-01T00:00:00.000Z",
      ended_at: "2024-01-01T00:00:01.000Z",
      exit_code: 0,
      output_chars: 10,
    },
    output: "$ ",
    cursor: 8,
    next_cursor: 10,
    truncated: true,
    has_more: false,
  },
  "sup.shell.write": {
    shell_id: "sh_0123456789ab",
    state: "running",
    cwd: "/workspace",
    cols: 120,
    rows: 30,
    started_at: "2024-01-01T00:00:00.000Z",
    ended_at: "2024-01-01T00:00:01.000Z",
    exit_code: 0,
    output_chars: 10,
  },
  "sup.shell.signal": {
    shell_id: "sh_0123456789ab",
    state: "running",
    cwd: "/workspace",
    cols: 120,
    rows: 30,
    started_at: "2024-01-01T00:00:00.000Z",
    ended_at: "2024-01-01T00:00:01.000Z",
    exit_code: 0,
    output_chars: 10,
  },
  "sup.shell.resize": {
    shell_id: "sh_0123456789ab",
    state: "running",
    cwd: "/workspace",
    cols: 120,
    rows: 30,
    started_at: "2024-01-01T00:00:00.000Z",
    ended_at: "2024-01-01T00:00:01.000Z",
    exit_code: 0,
    output_chars: 10,
  },
  "sup.shell.close": {
    shell_id: "sh_0123456789ab",
    state: "running",
    cwd: "/workspace",
    cols: 120,
    rows: 30,
    started_at: "2024-01-01T00:00:00.000Z",
    ended_at: "2024-01-01T00:00:01.000Z",
    exit_code: 0,
    output_chars: 10,
  },
  "sup.shell.list": {
    shells: [
      {
        shell_id: "sh_0123456789ab",
        state: "running",
        cwd: "/workspace",
        cols: 120,
        rows: 30,
        started_at: "2024-01-01T00:00:00.000Z",
        ended_at: "2024-01-01T00:00:01.000Z",
        exit_code: 0,
        output_chars: 10,
      },
    ],
  },
};
const OPS = Object.keys(CALL_TABLE) as CallOp[];

// --- an independent oracle: JSON Schema (the subset toJsonSchema emits for results) -------

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonSchema = Record<string, unknown>;
const KNOWN = new Set([
  "$schema",
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "pattern",
  "const",
  "enum",
  "anyOf",
  "oneOf",
]);

/** True when `x` conforms to `s`; throws on a keyword it does not know (never passes blindly). */
function conforms(s: JsonSchema, x: unknown): boolean {
  for (const k of Object.keys(s)) if (!KNOWN.has(k)) throw new Error(`oracle: unknown keyword ${k}`);
  if (s.anyOf) return (s.anyOf as JsonSchema[]).some((o) => conforms(o, x));
  if (s.oneOf) return (s.oneOf as JsonSchema[]).filter((o) => conforms(o, x)).length === 1;
  if ("const" in s && x !== s.const) return false;
  if (s.enum && !(s.enum as unknown[]).includes(x)) return false;
  switch (s.type) {
    case undefined:
      break;
    case "null":
      if (x !== null) return false;
      break;
    case "boolean":
      if (typeof x !== "boolean") return false;
      break;
    case "string":
      if (typeof x !== "string") return false;
      if (s.pattern && !new RegExp(s.pattern as string, "u").test(x)) return false;
      if (typeof s.minLength === "number" && x.length < s.minLength) return false;
      if (typeof s.maxLength === "number" && x.length > s.maxLength) return false;
      break;
    case "integer":
    case "number":
      if (typeof x !== "number" || !Number.isFinite(x)) return false;
      if (s.type === "integer" && !Number.isInteger(x)) return false;
      if (typeof s.minimum === "number" && x < s.minimum) return false;
      if (typeof s.maximum === "number" && x > s.maximum) return false;
      break;
    case "array":
      if (!Array.isArray(x)) return false;
      if (s.items && !x.every((i) => conforms(s.items as JsonSchema, i))) return false;
      break;
    case "object": {
      if (!x || typeof x !== "object" || Array.isArray(x)) return false;
      const o = x as Record<string, unknown>;
      const props = (s.properties ?? {}) as Record<string, JsonSchema>;
      for (const r of (s.required ?? []) as string[]) if (!Object.hasOwn(o, r)) return false;
      for (const [k, val] of Object.entries(o)) {
        if (Object.hasOwn(props, k)) {
          if (!conforms(props[k] as JsonSchema, val)) return false;
        } else if (s.additionalProperties === false) return false;
      }
      break;
    }
    default:
      throw new Error(`oracle: unknown type ${String(s.type)}`);
  }
  return true;
}
const ORACLE = Object.fromEntries(
  OPS.map((op) => [op, toJsonSchema(CALL_TABLE[op].result as v.GenericSchema, { errorMode: "ignore" })]),
) as Record<CallOp, JsonSchema>;

// --- random values and mutations -------------------------------------------------------

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
  int(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
}

function randomValue(rng: Rng, depth = 0): Json {
  switch (rng.int(depth > 2 ? 9 : 11)) {
    case 0:
      return null;
    case 1:
      return rng.int(2) === 0;
    case 2:
      return rng.int(1000);
    case 3:
      return -1 - rng.int(1000);
    case 4:
      return rng.pick([0.5, 1e300, -0, Number.MAX_SAFE_INTEGER + 2, 2 ** 53]);
    case 5:
      return rng.pick([
        "",
        "x",
        "0644",
        "0999",
        "/workspace",
        "utf8",
        "binary",
        "added",
        "file",
        "true",
        "1",
      ]);
    case 6:
      return rng.pick(["kvm", "renamed", "symlink", "\u0000", "é".repeat(rng.int(5))]);
    case 7:
      return rng.pick([true, false]);
    case 8:
      return rng.int(3);
    case 9:
      return Array.from({ length: rng.int(3) }, () => randomValue(rng, depth + 1));
    default: {
      const o: Record<string, Json> = {};
      for (let i = rng.int(3); i > 0; i--)
        o[rng.pick(["path", "a", "type", "files", "0"])] = randomValue(rng, depth + 1);
      return o;
    }
  }
}

/** Paths to every value inside `x` (objects and arrays), the root included as []. */
function pathsOf(x: Json, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(x)) for (const [i, v] of x.entries()) out.push(...pathsOf(v, [...at, i]));
  else if (x && typeof x === "object")
    for (const [k, v] of Object.entries(x)) out.push(...pathsOf(v, [...at, k]));
  return out;
}

/** One random change somewhere in `x` (set, delete, add a key, or replace the whole thing). */
function mutate(rng: Rng, x: Json): Json {
  const paths = pathsOf(x);
  const path = rng.pick(paths);
  if (path.length === 0) return rng.int(4) === 0 ? randomValue(rng) : addKey(rng, x);
  const parent = path.slice(0, -1).reduce<Json>((o, k) => (o as Record<string, Json>)[k] as Json, x) as
    | Record<string, Json>
    | Json[];
  const key = path.at(-1) as string | number;
  switch (rng.int(4)) {
    case 0:
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
      break;
    case 1: {
      const target = (parent as Record<string, Json>)[key];
      if (target && typeof target === "object" && !Array.isArray(target)) addKey(rng, target);
      else (parent as Record<string, Json>)[key] = randomValue(rng);
      break;
    }
    default:
      (parent as Record<string, Json>)[key] = randomValue(rng);
  }
  return x;
}
function addKey(rng: Rng, x: Json): Json {
  if (x && typeof x === "object" && !Array.isArray(x))
    x[rng.pick(["extra", "type", "Path", "__proto__x", "0"])] = randomValue(rng);
  return x;
}

/** The one rule: a result that conforms, returned unchanged, or PROTOCOL_ERROR naming the op. */
function expectResultOrProtocolError(op: CallOp, raw: unknown, what: string): "ok" | "error" {
  let out: unknown;
  try {
    out = parseResult(op, raw);
  } catch (err) {
    if (!(err instanceof PyroError)) throw new Error(`${what}: threw ${String(err)}`);
    if (err.code !== "PROTOCOL_ERROR") throw new Error(`${what}: ${err.code} ${err.message}`);
    if (!err.message.includes(`${op} result`) || err.details?.op !== op)
      throw new Error(`${what}: the error does not name the op: ${err.message}`);
    if (conforms(ORACLE[op], raw))
      throw new Error(`${what}: a well-typed result was refused: ${err.message}`);
    return "error";
  }
  if (!conforms(ORACLE[op], raw)) throw new Error(`${what}: a wrongly typed result was accepted`);
  if (!Bun.deepEquals(out, raw, true)) throw new Error(`${what}: the result was changed on the way in`);
  return "ok";
}

const clone = <T>(x: T): T => structuredClone(x);

describe("result decoding (parseResult)", () => {
  test("the oracle works: it accepts the samples and refuses obvious breakage (positive check)", () => {
    expect(Object.keys(SAMPLES).sort()).toEqual([...OPS].sort());
    for (const op of OPS) {
      expect(conforms(ORACLE[op], SAMPLES[op])).toBe(true);
      expect(conforms(ORACLE[op], { ...SAMPLES[op], nope: 1 })).toBe(false);
      expect(conforms(ORACLE[op], null)).toBe(false);
    }
  });

  test("every op's sample result is accepted unchanged and typed", () => {
    for (const op of OPS) expect(parseResult(op, clone(SAMPLES[op]))).toEqual(SAMPLES[op] as never);
    const list = parseResult("fs.list", clone(SAMPLES["fs.list"]));
    expect(list.entries[0]?.mode).toBe("0644"); // typed access, no casts
  });

  test("a missing field, a field of the wrong type, an unknown field: PROTOCOL_ERROR naming op and field", () => {
    for (const op of OPS) {
      const sample = SAMPLES[op] as Record<string, unknown>;
      for (const field of Object.keys(sample)) {
        const optional = !(ORACLE[op].required as string[]).includes(field);
        const { [field]: _, ...missing } = sample;
        if (!optional) {
          const err = (() => {
            try {
              parseResult(op, missing);
            } catch (e) {
              return e as PyroError;
            }
          })();
          expect(err?.code, `${op} without ${field}`).toBe("PROTOCOL_ERROR");
          expect(err?.details).toEqual({ op, field });
        }
        // a value of another JSON type than the sample's
        const wrong = typeof sample[field] === "string" || sample[field] === null ? 7 : "7";
        const e2 = (() => {
          try {
            parseResult(op, { ...sample, [field]: wrong });
          } catch (e) {
            return e as PyroError;
          }
        })();
        expect(e2?.code, `${op}.${field} = ${JSON.stringify(wrong)}`).toBe("PROTOCOL_ERROR");
        expect(e2?.message).toContain(`${op} result`);
        expect(String(e2?.details?.field)).toStartWith(field);
      }
      expect(() => parseResult(op, { ...sample, surprise: 1 })).toThrow(
        `${op} result does not match the protocol at surprise`,
      );
      for (const bad of [null, undefined, 1, "x", [], [sample]]) {
        expect(() => parseResult(op, bad)).toThrow(PyroError);
      }
    }
  });

  test(`fuzz: ${CASES} random and mutated results (seed ${SEED})`, () => {
    const rng = new Rng(SEED);
    const tally = { ok: 0, error: 0 };
    for (let i = 0; i < CASES; i++) {
      const op = rng.pick(OPS);
      let raw: Json = clone(SAMPLES[op]) as Json;
      if (rng.int(10) === 0) raw = randomValue(rng);
      else for (let n = rng.int(3); n >= 0; n--) raw = mutate(rng, raw);
      tally[expectResultOrProtocolError(op, raw, `seed ${SEED} case ${i} (${op}): ${JSON.stringify(raw)}`)]++;
    }
    // both outcomes occur (mutations that keep a result valid, e.g. another boolean)
    expect(tally.ok).toBeGreaterThan(0);
    expect(tally.error).toBeGreaterThan(CASES / 2);
  });
});

describe("call(): requests and results checked on the wire", () => {
  /** A stand-in peer answering each stream with whatever `answer` gives (raw frames). */
  function peer(answer: (request: Record<string, unknown>) => unknown) {
    const [a, b] = channelPair();
    const seen: Record<string, unknown>[] = [];
    new Connection(b, {
      onStream: (s) => {
        seen.push(s.request);
        s.result(answer(s.request) as Record<string, unknown>);
      },
    });
    return { conn: new Connection(a), seen };
  }

  test("a valid answer comes back typed; a request that fails its schema is never sent", async () => {
    const { conn, seen } = peer(() => SAMPLES["fs.read"]);
    const r = await call(conn, { op: "fs.read", path: "a" });
    expect(r.encoding_hint).toBe("utf8");
    const err = await call(conn, { op: "fs.read", path: "" }).catch((e) => e);
    expect(err.code).toBe("INVALID_INPUT");
    expect(err.message).toContain("bad request at path");
    const unknown = await call(conn, { op: "nope" } as never).catch((e) => e);
    expect(unknown.code).toBe("INVALID_INPUT");
    expect(seen.map((s) => s.op)).toEqual(["fs.read"]);
    conn.close();
  });

  test(`fuzz: ${STACK_CASES} mutated terminal frames through a Connection (seed ${SEED})`, async () => {
    const rng = new Rng(SEED ^ 0xa5a5a5a5);
    let current: Json = null;
    const { conn } = peer(() => current);
    const tally = { ok: 0, error: 0 };
    for (let i = 0; i < STACK_CASES; i++) {
      const op = rng.pick(OPS);
      let raw: Json = clone(SAMPLES[op]) as Json;
      for (let n = rng.int(2); n >= 0; n--) raw = mutate(rng, raw);
      current = raw;
      const what = `seed ${SEED} stack case ${i} (${op}): ${JSON.stringify(raw)}`;
      const request = { op, ...(REQUEST_FIELDS[op] ?? {}) } as never;
      try {
        const out = await call(conn, request);
        if (!conforms(ORACLE[op], out)) throw new Error(`${what}: a wrongly typed result was accepted`);
        tally.ok++;
      } catch (err) {
        if (!(err instanceof PyroError) || err.code !== "PROTOCOL_ERROR")
          throw new Error(`${what}: ${String(err)}`);
        tally.error++;
      }
    }
    expect(conn.isClosed).toBe(false); // a bad result fails its call, not the connection
    expect(tally.error).toBeGreaterThan(0);
    expect(tally.ok).toBeGreaterThan(0);
    conn.close();
  });
});

/** Required request fields, so call() sends the request (its own check passes). */
const REQUEST_FIELDS: Partial<Record<CallOp, Record<string, unknown>>> = {
  hello: { protocol_version: 2, host_version: "t" },
  "clock.set": { unix_ms: 1 },
  "sys.attach": {
    unix_ms: 1,
    entropy: Buffer.alloc(32, 1).toString("base64"),
    boot_id: "0b6f9c7e-2d4a-4c1b-9e8f-3a5d7c9b1e2f",
    data_disk: true,
  },
  "exec.kill": { pid: 2 },
  exec: { command: "true" },
  "fs.stat": { path: "a" },
  "fs.list": { path: "a" },
  "fs.read": { path: "a" },
  "fs.write": { path: "a" },
  "fs.mkdir": { path: "a" },
  "fs.remove": { path: "a" },
  "fs.move": { from: "a", to: "b" },
  "fs.freeze": { timeout_ms: 1000 },
  "archive.import": { dest: "a" },
  "archive.export": { path: "a" },
  "sup.exec.start": { exec: { op: "exec", command: "true" } },
  "sup.exec.kill": { exec_id: "ex_0123456789ab", signal: "SIGKILL" },
  "shell.open": { shell_id: "sh_0123456789ab" },
  "shell.write": { shell_id: "sh_0123456789ab", input: "ls\n" },
  "shell.signal": { shell_id: "sh_0123456789ab", signal: "SIGINT" },
  "shell.resize": { shell_id: "sh_0123456789ab", cols: 80, rows: 24 },
  "shell.close": { shell_id: "sh_0123456789ab" },
  "secrets.set": { secrets: [{ name: "TOKEN", value: "v" }] },
  "sup.shell.read": { shell_id: "sh_0123456789ab" },
  "sup.shell.write": { shell_id: "sh_0123456789ab", input: "ls\n" },
  "sup.shell.signal": { shell_id: "sh_0123456789ab", signal: "SIGINT" },
  "sup.shell.resize": { shell_id: "sh_0123456789ab", cols: 80, rows: 24 },
  "sup.shell.close": { shell_id: "sh_0123456789ab" },
  "service.start": {
    service_name: "web",
    command: "true",
    ready_timeout_ms: 1000,
    ready_interval_ms: 100,
    stop_grace_ms: 100,
  },
  "service.stop": { service_name: "web", grace_ms: 100 },
  "sys.keep": { shell_ids: ["sh_0123456789ab"], service_names: ["web"], exec_pids: [42] },
  "shell.adopt": { shell_id: "sh_0123456789ab" },
  "service.adopt": { service_name: "web" },
  "exec.adopt": { pid: 42 },
  "sup.service.start": {
    service: {
      service_name: "web",
      command: "true",
      ready_timeout_ms: 1000,
      ready_interval_ms: 100,
      stop_grace_ms: 100,
    },
    restart: "no",
    publish: [],
  },
  "sup.service.stop": { service_name: "web", grace_ms: 100 },
  "net.connect": { port: 8000 },
  "sup.forward.open": { guest_port: 8000 },
  "sup.forward.close": { host_port: 41234 },
};

describe("nothing crosses unchecked", () => {
  const ROOT = join(import.meta.dir, "..", "..");
  const RAW_CALL = /\bconn\.call\(|\.conn\.call\(/;
  const RAW_OPEN = /\.open\(\s*\{\s*op:/;

  test("the probes match a raw call (positive check)", () => {
    expect(RAW_CALL.test("await conn.call({ op: 'x' })")).toBe(true);
    expect(RAW_CALL.test("machine.conn.call(req)")).toBe(true);
    expect(RAW_OPEN.test('conn.open({ op: "fs.list" })')).toBe(true);
    expect(RAW_CALL.test("await call(conn, { op: 'x' })")).toBe(false);
  });

  test("host code talks to agents and supervisors only through call() (src/protocol/call.ts)", () => {
    const offenders: string[] = [];
    for (const file of new Glob("src/**/*.ts").scanSync(ROOT)) {
      if (file.startsWith("src/protocol/") || file.endsWith(".test.ts")) continue;
      const text = readFileSync(join(ROOT, file), "utf8");
      // the supervisor relays clients' requests as they are (the client checks the result)
      // and opens its liveness probes itself; everything else goes through call()
      if (RAW_CALL.test(text)) offenders.push(`${file}: Connection.call`);
      if (RAW_OPEN.test(text) && !file.startsWith("src/supervisor/"))
        offenders.push(`${file}: Connection.open`);
    }
    expect(offenders).toEqual([]);
  });
});
