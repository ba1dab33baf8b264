/**
 * Pins the wire format: MESSAGE_TABLE rendered to JSON Schema must match the committed
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
import {
  ArchiveExportRequest,
  ArchiveImportRequest,
  BaselineCaptureRequest,
  ClockSetRequest,
  DiffRequest,
  ErrorMessage,
  ExecKillRequest,
  ExecRequest,
  ExecResult,
  FsListRequest,
  FsMkdirRequest,
  FsMoveRequest,
  FsReadRequest,
  FsRemoveRequest,
  FsStatRequest,
  FsWriteRequest,
  HelloRequest,
  InfoRequest,
  MESSAGE_TABLE,
  PatchApplyRequest,
  PingRequest,
  Request,
  ShutdownRequest,
  SignalMessage,
} from "./messages.ts";
import { PROTOCOL_VERSION } from "./version.ts";

const SNAPSHOT_PATH = join(import.meta.dir, "messages.snapshot.json");
const CHANGED =
  "wire format changed: bump PROTOCOL_VERSION if incompatible, then UPDATE_SNAPSHOTS=1 bun test src/protocol/messages.test.ts";

function render(): { protocol_version: number; messages: Record<string, unknown> } {
  const messages: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(MESSAGE_TABLE)) {
    messages[name] = toJsonSchema(schema as v.GenericSchema, { errorMode: "ignore" });
  }
  return { protocol_version: PROTOCOL_VERSION, messages };
}

describe("wire format snapshot", () => {
  test("MESSAGE_TABLE + PROTOCOL_VERSION match messages.snapshot.json", () => {
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
    let before: { protocol_version: number; messages: Record<string, unknown> };
    try {
      before = JSON.parse(committed);
    } catch {
      throw new Error(`${CHANGED}\n(messages.snapshot.json is not valid JSON)`);
    }
    const after = JSON.parse(actual) as typeof before;
    if (!Bun.deepEquals(before, after, true)) {
      const names = new Set([...Object.keys(before.messages ?? {}), ...Object.keys(after.messages)]);
      const changed = [...names].filter(
        (n) => !Bun.deepEquals(before.messages?.[n], after.messages[n], true),
      );
      const version =
        before.protocol_version !== after.protocol_version
          ? `; protocol_version ${before.protocol_version} -> ${after.protocol_version}`
          : "";
      throw new Error(`${CHANGED}\n(changed: ${changed.join(", ") || "none"}${version})`);
    }
  });

  test("every message in the table renders to an object schema", () => {
    const { messages } = render();
    expect(Object.keys(messages).sort()).toEqual(Object.keys(MESSAGE_TABLE).sort());
    for (const schema of Object.values(messages)) expect((schema as { type?: string }).type).toBe("object");
  });
});

/** A minimal valid instance of each request schema. */
const VALID_REQUESTS: Array<[string, v.GenericSchema, Record<string, unknown>]> = [
  ["hello", HelloRequest, { op: "hello", protocol_version: 1, host_version: "0.0.0" }],
  ["ping", PingRequest, { op: "ping" }],
  ["clock.set", ClockSetRequest, { op: "clock.set", unix_ms: 1 }],
  ["info", InfoRequest, { op: "info" }],
  ["shutdown", ShutdownRequest, { op: "shutdown" }],
  ["exec", ExecRequest, { op: "exec", command: "true" }],
  ["exec.kill", ExecKillRequest, { op: "exec.kill", pid: 2 }],
  ["signal", SignalMessage, { op: "signal", signal: "SIGTERM" }],
  ["fs.stat", FsStatRequest, { op: "fs.stat", path: "a" }],
  ["fs.list", FsListRequest, { op: "fs.list", path: "a" }],
  ["fs.read", FsReadRequest, { op: "fs.read", path: "a" }],
  ["fs.write", FsWriteRequest, { op: "fs.write", path: "a" }],
  ["fs.mkdir", FsMkdirRequest, { op: "fs.mkdir", path: "a" }],
  ["fs.remove", FsRemoveRequest, { op: "fs.remove", path: "a" }],
  ["fs.move", FsMoveRequest, { op: "fs.move", from: "a", to: "b" }],
  ["archive.import", ArchiveImportRequest, { op: "archive.import", dest: "a" }],
  ["archive.export", ArchiveExportRequest, { op: "archive.export", path: "a" }],
  ["patch.apply", PatchApplyRequest, { op: "patch.apply" }],
  ["baseline.capture", BaselineCaptureRequest, { op: "baseline.capture" }],
  ["diff", DiffRequest, { op: "diff" }],
];

describe("request schemas", () => {
  test("the table of valid requests covers every request op", () => {
    const ops = Request.options.map(
      (o) => (o as unknown as { entries: { op: { literal: string } } }).entries.op.literal,
    );
    const covered = VALID_REQUESTS.map(([op]) => op).filter((op) => op !== "signal");
    expect(covered.sort()).toEqual([...ops].sort());
  });

  for (const [op, schema, valid] of VALID_REQUESTS) {
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

  test("ExecResult shape", () => {
    const r = {
      type: "result",
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
  });
});
