/**
 * Pins the wire format: MESSAGE_TABLE (request and result of every agent op), the error
 * frame, the supervisor's `sup.*` messages, the frame constants, the transport names and the
 * shared size limits, rendered to JSON (Schema), must match the committed
 * messages.snapshot.json. After an intended change run
 *   UPDATE_SNAPSHOTS=1 bun test src/protocol/messages.test.ts
 * and bump PROTOCOL_VERSION (src/protocol/version.ts) if old peers cannot talk to new ones.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { toJsonSchema } from "@valibot/to-json-schema";
import * as v from "valibot";
import { ERROR_CODES } from "./errors.ts";
import { CHANNEL_SHIFT, Channel, Flag, HEADER_BYTES, MAX_FRAME_PAYLOAD } from "./frame.ts";
import * as LIMITS from "./limits.ts";
import {
  AGENT_OPS,
  type AgentOp,
  ErrorMessage,
  ExecRequest,
  ExecResult,
  FsMoveRequest,
  FsStatRequest,
  FsWriteRequest,
  HelloRequest,
  MESSAGE_TABLE,
  Request,
  SignalMessage,
  SysAttachRequest,
  SysAttachResult,
} from "./messages.ts";
import { SUPERVISOR_OP_PREFIX, SUPERVISOR_TABLE } from "./supervisor.ts";
import { AGENT_PORT_NAME, AGENT_VSOCK_PORT } from "./transport.ts";
import { PROTOCOL_VERSION } from "./version.ts";

const SNAPSHOT_PATH = join(import.meta.dir, "messages.snapshot.json");
const CHANGED =
  "wire format changed: bump PROTOCOL_VERSION if incompatible, then UPDATE_SNAPSHOTS=1 bun test src/protocol/messages.test.ts";

const jsonSchema = (s: v.GenericSchema) => toJsonSchema(s, { errorMode: "ignore" });

function renderTable(table: Record<string, Record<string, v.GenericSchema>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [op, parts] of Object.entries(table)) {
    out[op] = Object.fromEntries(Object.entries(parts).map(([k, s]) => [k, jsonSchema(s)]));
  }
  return out;
}

type Snapshot = Record<string, unknown> & { protocol_version: number };

function render(): Snapshot {
  return {
    protocol_version: PROTOCOL_VERSION,
    frame: {
      layout: "[len u32 BE][stream u32 BE][flags u8][payload]",
      header_bytes: HEADER_BYTES,
      max_frame_payload: MAX_FRAME_PAYLOAD,
      flags: Flag,
      channel_shift: CHANNEL_SHIFT,
      channels: Channel,
    },
    transport: { agent_port_name: AGENT_PORT_NAME, agent_vsock_port: AGENT_VSOCK_PORT },
    limits: { ...LIMITS },
    messages: renderTable(MESSAGE_TABLE as unknown as Record<string, Record<string, v.GenericSchema>>),
    error: jsonSchema(ErrorMessage),
    supervisor: renderTable(SUPERVISOR_TABLE as unknown as Record<string, Record<string, v.GenericSchema>>),
  };
}

describe("wire format snapshot", () => {
  test("the rendered contract + PROTOCOL_VERSION match messages.snapshot.json", () => {
    const actual = `${JSON.stringify(render(), null, 2)}\n`;
    if (process.env.UPDATE_SNAPSHOTS === "1") {
      writeFileSync(SNAPSHOT_PATH, actual);
      return;
    }
    let committed: string;
    try {
      committed = readFileSync(SNAPSHOT_PATH, "utf8");
    } catch {
      throw new Error(`${CHANGED}\n(messages.snapshot.json is missing)`);
    }
    // Compared as data, not text, so reformatting the file (biome) is not a change.
    let before: Snapshot;
    try {
      before = JSON.parse(committed);
    } catch {
      throw new Error(`${CHANGED}\n(messages.snapshot.json is not valid JSON)`);
    }
    const after = JSON.parse(actual) as Snapshot;
    if (!Bun.deepEquals(before, after, true)) {
      const changed: string[] = [];
      for (const section of new Set([...Object.keys(before), ...Object.keys(after)])) {
        const b = before[section];
        const a = after[section];
        if (Bun.deepEquals(b, a, true)) continue;
        const nested = (x: unknown) => (x && typeof x === "object" ? (x as Record<string, unknown>) : {});
        const keys = new Set([...Object.keys(nested(b)), ...Object.keys(nested(a))]);
        const diff = [...keys].filter((k) => !Bun.deepEquals(nested(b)[k], nested(a)[k], true));
        changed.push(diff.length && typeof a === "object" ? `${section}: ${diff.join(", ")}` : section);
      }
      throw new Error(`${CHANGED}\n(changed: ${changed.join("; ")})`);
    }
  });

  test("the snapshot names every agent op and every supervisor op, each with a request and a result", () => {
    const snap = JSON.parse(readFileSync(SNAPSHOT_PATH, "utf8")) as {
      messages: Record<string, Record<string, unknown>>;
      supervisor: Record<string, Record<string, unknown>>;
    };
    expect(Object.keys(snap.messages).sort()).toEqual([...AGENT_OPS].sort());
    expect(Object.keys(snap.supervisor).sort()).toEqual(Object.keys(SUPERVISOR_TABLE).sort());
    for (const entry of [...Object.values(snap.messages), ...Object.values(snap.supervisor)]) {
      expect((entry.request as { type?: string }).type).toBe("object");
      expect((entry.result as { type?: string }).type).toBe("object");
    }
  });
});

describe("the table", () => {
  const tables = { ...MESSAGE_TABLE, ...SUPERVISOR_TABLE } as Record<
    string,
    { request: v.GenericSchema; result: v.GenericSchema }
  >;

  test("every op's request schema carries its own op and a result schema exists", () => {
    for (const [op, entry] of Object.entries(tables)) {
      expect(v.safeParse(entry.request, { op }).issues?.some((i) => i.path?.[0]?.key === "op")).not.toBe(
        true,
      );
      expect(v.safeParse(entry.request, { op: `${op}x` }).success).toBe(false);
      expect(entry.result).toBeDefined();
      expect(op.startsWith(SUPERVISOR_OP_PREFIX)).toBe(op in SUPERVISOR_TABLE);
    }
  });

  test("Request is derived from the table: it accepts exactly the agent ops", () => {
    const ops = Request.options.map(
      (o) => (o as unknown as { entries: { op: { literal: string } } }).entries.op.literal,
    );
    expect(ops).toEqual([...AGENT_OPS]);
    // the supervisor's own requests never reach the agent as valid requests
    for (const op of Object.keys(SUPERVISOR_TABLE)) expect(v.safeParse(Request, { op }).success).toBe(false);
  });

  test("results are strict: an unknown field is refused", () => {
    for (const [op, entry] of Object.entries(tables)) {
      const r = v.safeParse(entry.result, { __unknown_field__: 1 });
      expect(r.success, op).toBe(false);
      expect(
        r.issues?.some((i) => i.path?.[0]?.key === "__unknown_field__"),
        op,
      ).toBe(true);
    }
  });
});

/** A minimal valid instance of each agent request (typed: a missing op fails to compile). */
const VALID_REQUESTS: Record<AgentOp, Record<string, unknown>> = {
  hello: { op: "hello", protocol_version: 1, host_version: "0.0.0" },
  ping: { op: "ping" },
  "clock.set": { op: "clock.set", unix_ms: 1 },
  info: { op: "info" },
  shutdown: { op: "shutdown" },
  "sys.attach": {
    op: "sys.attach",
    unix_ms: 1,
    entropy: Buffer.alloc(32, 7).toString("base64"),
    boot_id: "0b6f9c7e-2d4a-4c1b-9e8f-3a5d7c9b1e2f",
    data_disk: true,
  },
  exec: { op: "exec", command: "true" },
  "exec.kill": { op: "exec.kill", pid: 2 },
  "fs.stat": { op: "fs.stat", path: "a" },
  "fs.list": { op: "fs.list", path: "a" },
  "fs.read": { op: "fs.read", path: "a" },
  "fs.write": { op: "fs.write", path: "a" },
  "fs.mkdir": { op: "fs.mkdir", path: "a" },
  "fs.remove": { op: "fs.remove", path: "a" },
  "fs.move": { op: "fs.move", from: "a", to: "b" },
  "archive.import": { op: "archive.import", dest: "a" },
  "archive.export": { op: "archive.export", path: "a" },
  "patch.apply": { op: "patch.apply" },
  "baseline.capture": { op: "baseline.capture" },
  "fs.freeze": { op: "fs.freeze", timeout_ms: 300000 },
  "fs.thaw": { op: "fs.thaw" },
  diff: { op: "diff" },
  "shell.open": { op: "shell.open", shell_id: "sh_0123456789ab" },
  "shell.write": { op: "shell.write", shell_id: "sh_0123456789ab", input: "x" },
  "shell.signal": { op: "shell.signal", shell_id: "sh_0123456789ab", signal: "SIGINT" },
  "shell.resize": { op: "shell.resize", shell_id: "sh_0123456789ab", cols: 80, rows: 24 },
  "shell.close": { op: "shell.close", shell_id: "sh_0123456789ab" },
  "secrets.set": { op: "secrets.set", secrets: [{ name: "TOKEN", value: "v" }] },
  "service.start": {
    op: "service.start",
    service_name: "web",
    command: "true",
    ready_timeout_ms: 1000,
    ready_interval_ms: 100,
    stop_grace_ms: 100,
  },
  "service.stop": { op: "service.stop", service_name: "web", grace_ms: 100 },
  "sys.keep": { op: "sys.keep", shell_ids: ["sh_0123456789ab"], service_names: ["web"], exec_pids: [42] },
  "sys.release": { op: "sys.release" },
  "shell.adopt": { op: "shell.adopt", shell_id: "sh_0123456789ab" },
  "service.adopt": { op: "service.adopt", service_name: "web" },
  "exec.adopt": { op: "exec.adopt", pid: 42 },
  "net.connect": { op: "net.connect", port: 8000 },
};
const REQUEST_CASES: Array<[string, v.GenericSchema, Record<string, unknown>]> = [
  ...AGENT_OPS.map((op): [string, v.GenericSchema, Record<string, unknown>] => [
    op,
    MESSAGE_TABLE[op].request,
    VALID_REQUESTS[op],
  ]),
  ["signal", SignalMessage, { op: "signal", signal: "SIGTERM" }],
];

describe("request schemas", () => {
  test("the table of valid requests covers every request op", () => {
    expect(Object.keys(VALID_REQUESTS).sort()).toEqual([...AGENT_OPS].sort());
  });

  for (const [op, schema, valid] of REQUEST_CASES) {
    test(`${op}: minimal request is valid, unknown fields are rejected (strict)`, () => {
      expect(v.safeParse(schema, valid).success).toBe(true);
      if (op !== "signal") expect(v.safeParse(Request, valid).success).toBe(true);
      for (const extra of ["extra", "Op", "__proto__x", "type"]) {
        const withExtra = { ...valid, [extra]: 1 };
        expect(v.safeParse(schema, withExtra).success).toBe(false);
        if (op !== "signal") expect(v.safeParse(Request, withExtra).success).toBe(false);
      }
    });

    test(`${op}: a missing or wrong op is rejected`, () => {
      const { op: _, ...noOp } = valid;
      expect(v.safeParse(schema, noOp).success).toBe(false);
      expect(v.safeParse(schema, { ...valid, op: `${op}x` }).success).toBe(false);
      expect(v.safeParse(Request, { ...valid, op: "nope" }).success).toBe(false);
    });
  }

  test("hello config is strict too", () => {
    const base = { op: "hello", protocol_version: 1, host_version: "x" };
    expect(v.safeParse(HelloRequest, { ...base, config: { hostname: "h", env: { A_1: "x" } } }).success).toBe(
      true,
    );
    expect(v.safeParse(HelloRequest, { ...base, config: { nope: 1 } }).success).toBe(false);
    expect(v.safeParse(HelloRequest, { ...base, config: { env: { "1BAD": "x" } } }).success).toBe(false);
    expect(v.safeParse(HelloRequest, { ...base, protocol_version: -1 }).success).toBe(false);
    expect(v.safeParse(HelloRequest, { ...base, protocol_version: 1.5 }).success).toBe(false);
  });

  test("sys.attach: at least 32 bytes of base64 entropy, a UUID boot id, a host name, an IP resolver", () => {
    const base = VALID_REQUESTS["sys.attach"] as Record<string, unknown>;
    const ok = (r: Record<string, unknown>) => v.safeParse(SysAttachRequest, { ...base, ...r }).success;
    expect(ok({ hostname: "ws-1.example", dns: "10.0.2.3" })).toBe(true);
    expect(ok({ dns: "fd00::1", data_disk: false })).toBe(true);
    expect(ok({ entropy: Buffer.alloc(31, 7).toString("base64") })).toBe(false); // 31 bytes
    expect(ok({ entropy: "!".repeat(44) })).toBe(false); // not base64
    expect(ok({ boot_id: "not-a-uuid" })).toBe(false);
    expect(ok({ hostname: "bad name" })).toBe(false);
    expect(ok({ hostname: "-x" })).toBe(false);
    expect(ok({ dns: "resolver.example" })).toBe(false);
    expect(ok({ data_disk: undefined })).toBe(false);
    expect(ok({ unix_ms: -1 })).toBe(false);
    const result = { boot_id: base.boot_id, attached_ms: 12 };
    expect(v.safeParse(SysAttachResult, result).success).toBe(true);
    expect(v.safeParse(SysAttachResult, { ...result, attached_ms: -1 }).success).toBe(false);
  });

  test("ExecRequest requires exactly one of command and argv", () => {
    expect(v.safeParse(ExecRequest, { op: "exec", command: "echo hi" }).success).toBe(true);
    expect(v.safeParse(ExecRequest, { op: "exec", argv: ["echo", "hi"] }).success).toBe(true);
    expect(v.safeParse(ExecRequest, { op: "exec", command: "" }).success).toBe(true);
    const neither = v.safeParse(ExecRequest, { op: "exec" });
    expect(neither.success).toBe(false);
    expect(neither.issues?.[0]?.message).toBe("exactly one of command or argv");
    const both = v.safeParse(ExecRequest, { op: "exec", command: "echo", argv: ["echo"] });
    expect(both.success).toBe(false);
    expect(both.issues?.[0]?.message).toBe("exactly one of command or argv");
    // the same rule holds through the Request variant
    expect(v.safeParse(Request, { op: "exec" }).success).toBe(false);
    expect(v.safeParse(Request, { op: "exec", command: "a", argv: ["a"] }).success).toBe(false);
  });

  test("ExecRequest field rules", () => {
    const ok = (r: Record<string, unknown>) =>
      v.safeParse(ExecRequest, { op: "exec", command: "x", ...r }).success;
    expect(ok({ argv: undefined })).toBe(true);
    expect(v.safeParse(ExecRequest, { op: "exec", argv: [] }).success).toBe(false);
    expect(v.safeParse(ExecRequest, { op: "exec", argv: [1] }).success).toBe(false);
    expect(ok({ timeout_ms: 1, max_output_bytes: 0, stdin: true, cwd: "/workspace", env: { A: "b" } })).toBe(
      true,
    );
    expect(ok({ timeout_ms: 0 })).toBe(false);
    expect(ok({ timeout_ms: 1.5 })).toBe(false);
    expect(ok({ max_output_bytes: -1 })).toBe(false);
    expect(ok({ cwd: "" })).toBe(false);
    expect(ok({ cwd: "x".repeat(4097) })).toBe(false);
    expect(ok({ env: { "A-B": "x" } })).toBe(false);
    expect(ok({ env: { A: 1 } })).toBe(false);
    expect(ok({ stdin: "yes" })).toBe(false);
  });

  test("signal names are a closed list", () => {
    for (const s of ["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"]) {
      expect(v.safeParse(SignalMessage, { op: "signal", signal: s }).success).toBe(true);
    }
    expect(v.safeParse(SignalMessage, { op: "signal", signal: "SIGSTOP" }).success).toBe(false);
    expect(v.safeParse(SignalMessage, { op: "signal", signal: 9 }).success).toBe(false);
  });

  test("paths must be non-empty and at most 4096 characters", () => {
    expect(v.safeParse(FsStatRequest, { op: "fs.stat", path: "" }).success).toBe(false);
    expect(v.safeParse(FsStatRequest, { op: "fs.stat", path: "x".repeat(4096) }).success).toBe(true);
    expect(v.safeParse(FsStatRequest, { op: "fs.stat", path: "x".repeat(4097) }).success).toBe(false);
    expect(v.safeParse(FsMoveRequest, { op: "fs.move", from: "a" }).success).toBe(false);
    expect(v.safeParse(FsWriteRequest, { op: "fs.write", path: "a", mode: 0o10000 }).success).toBe(false);
    expect(v.safeParse(FsWriteRequest, { op: "fs.write", path: "a", mode: 0o7777 }).success).toBe(true);
  });

  test("non-object requests are rejected", () => {
    for (const value of [null, undefined, 1, "ping", [], [{ op: "ping" }]]) {
      expect(v.safeParse(Request, value).success).toBe(false);
    }
  });
});

describe("response schemas", () => {
  test("ErrorMessage accepts exactly the shared error codes", () => {
    for (const code of ERROR_CODES) {
      expect(v.safeParse(ErrorMessage, { type: "error", code, message: "m" }).success).toBe(true);
    }
    expect(v.safeParse(ErrorMessage, { type: "error", code: "NOPE", message: "m" }).success).toBe(false);
  });

  test("ExecResult shape (the result without the frame's `type`)", () => {
    const r = {
      exit_code: 0,
      signal: null,
      timed_out: false,
      stdout_bytes: 0,
      stderr_bytes: 0,
      stdout_truncated: false,
      stderr_truncated: false,
      duration_ms: 3,
    };
    expect(v.safeParse(ExecResult, r).success).toBe(true);
    expect(v.safeParse(ExecResult, { ...r, signal: "SIGKILL" }).success).toBe(true);
    const { timed_out: _, ...missing } = r;
    expect(v.safeParse(ExecResult, missing).success).toBe(false);
    expect(v.safeParse(ExecResult, { ...r, type: "result" }).success).toBe(false);
    expect(v.safeParse(ExecResult, { ...r, exit_code: "0" }).success).toBe(false);
  });
});
