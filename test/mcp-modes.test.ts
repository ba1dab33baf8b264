/**
 * Profiles and modes as a chat client sees them: tools/list (names, descriptions, input
 * schemas, annotations, and a digest of each output schema) and the instructions, per
 * profile and per mode, against the committed snapshot test/mcp-tools.snapshot.json.
 *
 * When the tool surface changes on purpose, review the diff and rewrite the snapshot with
 *   UPDATE_SNAPSHOTS=1 bun test test/mcp-modes.test.ts
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { MODE_NAMES, MODES, type Mode, PROFILE_OMIT, PROFILES } from "../src/mcp/modes.ts";
import { createServer, type ServerOptions } from "../src/mcp/server.ts";
import { toolsFor } from "../src/mcp/tools.ts";
import { OPERATIONS } from "../src/operations/index.ts";
import { Pyro } from "../src/sdk/index.ts";
import { ensureBuilt, freshHome, PYRO, pyro, toolPayload } from "./helpers.ts";

const SNAPSHOT_PATH = join(import.meta.dir, "mcp-tools.snapshot.json");
const HOW_TO_UPDATE =
  "the MCP tool surface changed: if that is intended, review it and rewrite the snapshot with UPDATE_SNAPSHOTS=1 bun test test/mcp-modes.test.ts";

const home = freshHome();
afterAll(() => rmSync(home, { recursive: true, force: true }));

/** An in-process server and an official client connected to it. */
async function inMemory(opts: ServerOptions): Promise<Client> {
  const server = createServer({ env: { PYRO_HOME: home }, ...opts });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(a);
  const client = new Client({ name: "pyro-modes-test", version: "0.0.0" });
  await client.connect(b);
  return client;
}

const COMBOS: Array<{ key: string; opts: ServerOptions }> = [
  ...PROFILES.map((profile) => ({ key: `profile ${profile}`, opts: { profile } })),
  ...MODE_NAMES.map((mode) => ({ key: `mode ${mode} (${MODES[mode].profile})`, opts: { mode } })),
];

const digest = (x: unknown) => createHash("sha256").update(JSON.stringify(x)).digest("hex").slice(0, 16);

async function surface(opts: ServerOptions) {
  const client = await inMemory(opts);
  try {
    const { tools } = await client.listTools();
    return {
      instructions: client.getInstructions(),
      tools: tools.map((t) => ({
        name: t.name,
        title: t.title,
        description: t.description,
        annotations: t.annotations,
        inputSchema: t.inputSchema,
        outputSchema_sha256: digest(t.outputSchema),
      })),
    };
  } finally {
    await client.close();
  }
}

const propsOf = (t: { inputSchema: { properties?: Record<string, unknown> } }) =>
  Object.keys(t.inputSchema.properties ?? {});

describe("tools/list per profile and mode", () => {
  let all: Record<string, Awaited<ReturnType<typeof surface>>>;
  beforeAll(async () => {
    all = {};
    for (const c of COMBOS) all[c.key] = await surface(c.opts);
  });

  test("matches the committed snapshot", () => {
    const actual = `${JSON.stringify(all, null, 2)}\n`;
    if (process.env.UPDATE_SNAPSHOTS === "1") {
      writeFileSync(SNAPSHOT_PATH, actual);
      return;
    }
    let committed = "";
    try {
      committed = readFileSync(SNAPSHOT_PATH, "utf8");
    } catch {
      throw new Error(`${SNAPSHOT_PATH} is missing: ${HOW_TO_UPDATE}`);
    }
    if (actual !== committed) {
      const was = JSON.parse(committed) as typeof all;
      const changed = Object.keys({ ...was, ...all }).flatMap((k) => {
        const names = new Set([...(was[k]?.tools ?? []), ...(all[k]?.tools ?? [])].map((t) => t.name));
        const diffs = [...names].filter(
          (n) =>
            JSON.stringify(was[k]?.tools.find((t) => t.name === n)) !==
            JSON.stringify(all[k]?.tools.find((t) => t.name === n)),
        );
        if (was[k]?.instructions !== all[k]?.instructions) diffs.push("(instructions)");
        return diffs.length ? [`${k}: ${diffs.join(", ")}`] : [];
      });
      throw new Error(`${HOW_TO_UPDATE}\nchanged:\n  ${changed.join("\n  ")}`);
    }
  });

  test("core never exposes secrets, network policy, shells, services, snapshots or disk tools", () => {
    const forbiddenTool = /^(shell_|service_|snapshot_|workspace_disk_)/;
    const forbiddenField = /secret|network_policy/;
    const offences = (k: string) => [
      ...all[k]!.tools.filter((t) => forbiddenTool.test(t.name)).map((t) => t.name),
      ...all[k]!.tools.flatMap((t) =>
        propsOf(t)
          .filter((p) => forbiddenField.test(p))
          .map((p) => `${t.name}.${p}`),
      ),
    ];
    // Probe: the full profile has snapshot and disk tools and the network policy.
    expect(offences("profile workspace-full")).toEqual(
      expect.arrayContaining(["snapshot_create", "workspace_disk_read", "workspace_create.network_policy"]),
    );
    for (const k of [
      "profile workspace-core",
      "mode repro-fix (workspace-core)",
      "mode inspect (workspace-core)",
    ])
      expect({ k, offences: offences(k) }).toEqual({ k, offences: [] });
  });

  test("inspect is offline: no tool takes a network option, and one given is refused", async () => {
    expect(propsOf(all["profile workspace-core"]!.tools.find((t) => t.name === "vm_run")!)).toContain(
      "network",
    );
    for (const t of all["mode inspect (workspace-core)"]!.tools)
      expect({ tool: t.name, props: propsOf(t).filter((p) => p.includes("network")) }).toEqual({
        tool: t.name,
        props: [],
      });
    const client = await inMemory({ mode: "inspect" });
    try {
      for (const [name, args] of [
        ["vm_run", { command: "true", network: true }],
        ["workspace_create", { network_policy: "egress" }],
      ] as const) {
        const r = await client.callTool({ name, arguments: args });
        expect(r.isError).toBe(true);
        expect(toolPayload(r).code).toBe("INVALID_INPUT");
      }
    } finally {
      await client.close();
    }
  });

  test("modes narrow the tool set and rewrite descriptions; review-eval has snapshots, cold-start the full create", () => {
    const names = (k: string) => all[k]!.tools.map((t) => t.name);
    for (const mode of MODE_NAMES) {
      const k = `mode ${mode} (${MODES[mode].profile})`;
      const profile = `profile ${MODES[mode].profile}`;
      expect(names(k).length).toBeLessThan(names(profile).length);
      for (const n of names(k)) expect(names(profile)).toContain(n);
      for (const [tool, text] of Object.entries(MODES[mode].descriptions)) {
        const shown = all[k]!.tools.find((t) => t.name === tool)!.description;
        expect(shown).toBe(text.trim());
        expect(shown).not.toBe(all[profile]!.tools.find((t) => t.name === tool)!.description);
      }
      expect(all[k]!.instructions).toContain(`Mode ${mode}:`);
    }
    expect(names("mode review-eval (workspace-full)")).toEqual(
      expect.arrayContaining(["snapshot_create", "snapshot_list", "workspace_reset", "workspace_summary"]),
    );
    expect(
      propsOf(all["mode cold-start (workspace-full)"]!.tools.find((t) => t.name === "workspace_create")!),
    ).toContain("network_policy");
  });
});

describe("the mode table", () => {
  test("each mode's tools belong to its profile, each description file to one of its tools", () => {
    for (const mode of MODE_NAMES) {
      const spec = MODES[mode];
      expect(() => toolsFor(spec.profile, mode)).not.toThrow();
      const files = readdirSync(join(import.meta.dir, "..", "src", "mcp", "modes", mode)).sort();
      expect(files).toEqual(
        ["instructions.txt", ...Object.keys(spec.descriptions).map((t) => `${t}.txt`)].sort(),
      );
      for (const t of Object.keys(spec.descriptions)) expect(spec.tools as readonly string[]).toContain(t);
    }
  });

  test("omitted fields are optional in every tool that has them (leaving one out means its default)", () => {
    const omitted = new Set<string>([
      ...Object.values(PROFILE_OMIT).flat(),
      ...MODE_NAMES.flatMap((m) => [...((MODES[m] as { omit?: readonly string[] }).omit ?? [])]),
    ]);
    let seen = 0;
    for (const op of OPERATIONS.filter((o) => o.profiles.length > 0)) {
      const input = op.input as any;
      const obj = (input.pipe?.[0] ?? input).entries as Record<string, { type: string }>;
      for (const [field, schema] of Object.entries(obj))
        if (omitted.has(field)) {
          seen++;
          expect({ tool: op.name, field, type: schema.type }).toEqual({
            tool: op.name,
            field,
            type: "optional",
          });
        }
    }
    expect(seen).toBeGreaterThan(0); // the probe found network_policy and network
  });
});

describe("choosing a mode", () => {
  beforeAll(async () => {
    await ensureBuilt();
  }, 300_000);

  test("an unknown mode, or a profile the mode contradicts, is a usage error (exit 64)", async () => {
    const bad = await pyro(["mcp", "serve", "--mode", "bogus"]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('unknown mode "bogus"');
    expect(bad.stderr).toContain("repro-fix, inspect, cold-start, review-eval");
    const clash = await pyro(["mcp", "serve", "--mode", "inspect", "--profile", "workspace-full"]);
    expect(clash.code).toBe(64);
    expect(clash.stderr).toContain("mode inspect runs with profile workspace-core");
    expect(() => createServer({ mode: "nope" as Mode, env: { PYRO_HOME: home } })).toThrow(/unknown mode/);
  });

  test("pyro mcp serve --mode inspect (with its own profile) serves the inspect tools; a create is offline", async () => {
    const h = freshHome();
    const transport = new StdioClientTransport({
      command: PYRO,
      cwd: process.env.PYRO_TEST_TMP,
      args: ["mcp", "serve", "--mode", "inspect", "--profile", "workspace-core", "--allow-host-compat"],
      env: { ...(process.env as Record<string, string>), PYRO_HOME: h, PYRO_BACKEND: "host" },
      stderr: "pipe",
    });
    const client = new Client({ name: "pyro-modes-test", version: "0.0.0" });
    await client.connect(transport);
    try {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toEqual([...MODES.inspect.tools]);
      expect(client.getInstructions()).toContain("Mode inspect:");
      const ws = toolPayload(
        await client.callTool({ name: "workspace_create", arguments: { allow_host_compat: true } }),
      );
      expect(ws.network_policy).toBe("off");
      await client.callTool({ name: "workspace_delete", arguments: { workspace_id: ws.workspace_id } });
    } finally {
      await client.close();
      rmSync(h, { recursive: true, force: true });
    }
  });

  test("the SDK's createServer takes a mode", async () => {
    const server = await new Pyro({ home }).createServer({ mode: "review-eval" });
    const [a, b] = InMemoryTransport.createLinkedPair();
    await server.connect(a);
    const client = new Client({ name: "pyro-modes-test", version: "0.0.0" });
    await client.connect(b);
    try {
      expect((await client.listTools()).tools.map((t) => t.name)).toEqual([...MODES["review-eval"].tools]);
    } finally {
      await client.close();
    }
  });
});
