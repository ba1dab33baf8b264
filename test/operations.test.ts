/**
 * The operations table is complete and every face is derived from it: each operation has
 * an output schema, an SDK method, an MCP tool (or says why not), and consistent field
 * names; invoke() checks inputs and results for all faces; a new operation (the fixture
 * docs/architecture.md shows) gets its CLI flags, MCP schemas and checks with no other code.
 */
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { flagSpecs, parseCli } from "../src/cli/flags.ts";
import { makeCtx } from "../src/manager/context.ts";
import { mcpView, toolDefinition } from "../src/mcp/tools.ts";
import { type AnyOperation, OPERATIONS } from "../src/operations/index.ts";
import { invoke } from "../src/operations/invoke.ts";
import { defineOperation } from "../src/operations/types.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { Pyro } from "../src/sdk/index.ts";
import { echoOp } from "./fixtures/echo-op.ts";

const ops = OPERATIONS as readonly AnyOperation[];
const fields = (op: AnyOperation): string[] => {
  const s = op.input as any;
  return Object.keys((s.pipe?.[0] ?? s).entries ?? {});
};

describe("the operations table", () => {
  test("every operation: strict output schema, SDK method, MCP tool or a stated reason", () => {
    const missing: string[] = [];
    for (const op of ops) {
      // a union (workspace_exec: attached result or detached exec) is one of strict objects
      const shapes = (op.output as any)?.type === "union" ? (op.output as any).options : [op.output];
      if (!shapes.every((o: any) => o?.type === "strict_object"))
        missing.push(`${op.name}: output is not a strict object`);
      if (typeof (Pyro.prototype as any)[op.sdk] !== "function")
        missing.push(`${op.name}: no SDK method ${op.sdk}`);
      if (op.profiles.length === 0 && !op.notOverMcp?.trim())
        missing.push(`${op.name}: in no MCP profile and no notOverMcp reason`);
      if (op.profiles.length > 0 && op.notOverMcp) missing.push(`${op.name}: notOverMcp but served over MCP`);
    }
    expect(missing).toEqual([]);
  });

  test("names are unique per face, and every field an operation names exists in its input", () => {
    const uniq = (xs: string[]) => xs.filter((x, i) => xs.indexOf(x) !== i);
    expect(uniq(ops.map((o) => o.name))).toEqual([]);
    expect(uniq(ops.map((o) => o.sdk))).toEqual([]);
    expect(uniq(ops.map((o) => o.cli.join(" ")))).toEqual([]);
    const bad: string[] = [];
    for (const op of ops) {
      const have = fields(op);
      const named = [
        ...(op.sdkArgs ?? []),
        ...(op.positionals ?? []),
        ...(op.rest ? [op.rest] : []),
        ...Object.keys(op.hostPaths ?? {}),
        ...(op.mcpOmit ?? []),
      ];
      for (const f of named) if (!have.includes(f)) bad.push(`${op.name}: ${f}`);
      for (const flag of Object.keys(op.cliFlags ?? {}))
        if (flagSpecs(op).some((s) => s.flag === flag))
          bad.push(`${op.name}: cli flag --${flag} shadows an input`);
    }
    expect(bad).toEqual([]);
  });

  test("MCP tools publish input and output JSON Schemas of type object", () => {
    for (const op of ops.filter((o) => o.profiles.length > 0)) {
      const t = toolDefinition(mcpView(op));
      expect(t.inputSchema.type).toBe("object");
      expect(t.outputSchema.type).toBe("object");
      expect(Object.keys((t.outputSchema as any).properties ?? {}).length).toBeGreaterThan(0);
    }
  });
});

describe("invoke: one entry for every face", () => {
  const ctx = makeCtx({ PYRO_HOME: "/nonexistent-pyro-home" });

  test("the fixture operation runs through invoke with defaults applied", async () => {
    expect(await invoke(echoOp, ctx, { text: "ab", times: 2 })).toEqual({ said: "abab" });
    expect(await invoke(echoOp, ctx, { text: "x" })).toEqual({ said: "x" });
  });

  test("bad input is INVALID_INPUT naming the field; nothing runs", async () => {
    let ran = false;
    const op = defineOperation({
      ...echoOp,
      run: async () => {
        ran = true;
        return { said: "" };
      },
    });
    const err = await invoke(op, ctx, { text: "" }).catch((e) => e);
    expect(err).toBeInstanceOf(PyroError);
    expect(err.code).toBe("INVALID_INPUT");
    expect(err.message).toContain("text");
    expect(ran).toBe(false);
  });

  test("a result that drifts from its schema is caught (extra field, wrong type), naming the field", async () => {
    const extra = defineOperation({ ...echoOp, run: async () => ({ said: "x", type: "result" }) });
    const wrong = defineOperation({ ...echoOp, run: async () => ({ said: 5 }) });
    for (const [op, field] of [
      [extra, "type"],
      [wrong, "said"],
    ] as const) {
      const err = await invoke(op as AnyOperation, ctx, { text: "x" }).catch((e) => e);
      expect(err.code).toBe("INTERNAL");
      expect(JSON.stringify(err.toJSON())).toContain(field);
    }
  });

  test("a face's prepare step runs between parsing and running (MCP confines paths there)", async () => {
    const out = await invoke(echoOp, ctx, { text: "a" }, { prepare: (i) => ({ ...i, times: 3 }) });
    expect(out).toEqual({ said: "aaa" });
  });

  test("a workspace operation checks the states it accepts before running", async () => {
    const exec = ops.find((o) => o.name === "workspace_exec") as AnyOperation;
    expect(exec.states).toEqual(["started"]);
    // no such workspace: the state check is where it is found missing, before `run`
    const err = await invoke(exec, ctx, { workspace_id: "ws_000000000000", command: "true" }).catch((e) => e);
    expect(err.code).toBe("WORKSPACE_NOT_FOUND");
  });
});

describe("a new operation needs no code in any face", () => {
  test("CLI flags and positionals come from its input schema", () => {
    expect(flagSpecs(echoOp).map((s) => [s.field, s.flag, s.kind])).toEqual([
      ["text", "text", "string"],
      ["times", "times", "number"],
    ]);
    expect(parseCli(echoOp, ["hi", "--times", "2", "--json"])).toMatchObject({
      input: { text: "hi", times: 2 },
      json: true,
    });
    expect(() => parseCli(echoOp, ["hi", "--loud"])).toThrow(/loud/);
  });

  test("the MCP tool definition carries both schemas and the annotations", () => {
    const t = toolDefinition(echoOp);
    expect(t.name).toBe("workspace_echo");
    expect((t.inputSchema as any).required).toEqual(["text"]);
    expect((t.outputSchema as any).properties.said.type).toBe("string");
    expect(t.annotations.readOnlyHint).toBe(true);
  });

  test("the SDK's positional arguments follow sdkArgs, the rest is an options object", async () => {
    const sdk = new Pyro({ home: "/nonexistent-pyro-home" });
    // a real operation with two sdkArgs and options: wrong options type is refused as PyroError
    const err = await (sdk as any)
      .execWorkspace("ws_000000000000", "true", "not-an-object")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PyroError);
    expect(err.code).toBe("INVALID_INPUT");
    const missing = await sdk
      .execWorkspace("ws_000000000000", "true", { timeout_seconds: 1 })
      .catch((e) => e);
    expect(missing.code).toBe("WORKSPACE_NOT_FOUND");
    const unknown = await sdk.call("no_such_tool").catch((e) => e);
    expect(unknown).toBeInstanceOf(PyroError);
  });
});

test("output schemas parse what the schema-checked faces return (valibot round trip)", () => {
  const rec = ops.find((o) => o.name === "workspace_status") as AnyOperation;
  const sample = {
    workspace_id: "ws_0123456789ab",
    name: null,
    labels: {},
    environment: "debian:12",
    state: "started",
    created_at: "2026-01-01T00:00:00.000Z",
    last_activity_at: "2026-01-01T00:00:00.000Z",
    expires_at: null,
    execution_mode: "guest",
    backend: "qemu",
    accelerator: "tcg",
    network_policy: "off",
    allow_hosts: [],
    allow_cidrs: [],
    workspace_seed: { origin_kind: "empty", origin_ref: null },
    vcpu_count: 1,
    mem_mib: 1024,
    ttl_seconds: 600,
    secrets: [],
    stop_reason: null,
    agent_unresponsive_since: null,
    vm_status: null,
    command_count: 0,
    reset_at: null,
    auto_pause_after_seconds: null,
    paused_by: null,
    resumed_at: null,
    resumed_by: null,
    boot: "template",
    boot_note: null,
    shells: 1,
    services: 0,
  };
  expect(v.safeParse(rec.output, sample).success).toBe(true);
  expect(v.safeParse(rec.output, { ...sample, supervisor_pid: 1 }).success).toBe(false);
});
