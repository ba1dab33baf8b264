/** The MCP server as a chat client sees it: dist/pyro mcp serve, driven by the official SDK client. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ensureBuilt, freshHome, PYRO, toolPayload } from "./helpers.ts";

async function connect(profile?: string, env: Record<string, string> = {}) {
  const home = freshHome();
  const transport = new StdioClientTransport({
    command: PYRO,
    cwd: process.env.PYRO_TEST_TMP, // outside any git checkout: no project
    args: ["mcp", "serve", "--allow-host-compat", ...(profile ? ["--profile", profile] : [])],
    env: { ...(process.env as Record<string, string>), PYRO_HOME: home, PYRO_BACKEND: "host", ...env },
    stderr: "pipe",
  });
  const client = new Client({ name: "pyro-test", version: "0.0.0" });
  await client.connect(transport);
  return { client, home };
}

beforeAll(async () => {
  await ensureBuilt();
});

describe("mcp serve (workspace-core)", () => {
  let client: Client;
  let home: string;
  beforeAll(async () => {
    ({ client, home } = await connect());
  });
  afterAll(async () => {
    await client.close();
  });

  test("tools/list: every tool has an input schema and annotations", async () => {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name).sort();
    expect(names).toContain("vm_run");
    expect(names).toContain("workspace_create");
    expect(names).toContain("workspace_exec");
    expect(names).toContain("workspace_delete");
    expect(names).not.toContain("workspace_stop"); // full profile only
    for (const t of tools) {
      expect(t.inputSchema.type).toBe("object");
      expect(t.annotations).toBeDefined();
      expect(typeof t.annotations?.readOnlyHint).toBe("boolean");
      expect(typeof t.annotations?.destructiveHint).toBe("boolean");
      expect(t.description?.length ?? 0).toBeGreaterThan(40);
    }
    const exec = tools.find((t) => t.name === "workspace_exec");
    expect(Object.keys(exec?.inputSchema.properties ?? {})).toEqual(
      expect.arrayContaining(["workspace_id", "command", "timeout_seconds"]),
    );
  });

  test("workspace_create → workspace_exec → workspace_delete", async () => {
    const created = await client.callTool({
      name: "workspace_create",
      arguments: { environment: "debian:12", name: "mcp-one", allow_host_compat: true },
    });
    expect(created.isError).toBeFalsy();
    const ws = toolPayload(created);
    expect(ws.workspace_id).toMatch(/^ws_/);
    expect(ws.state).toBe("started");
    const ran = await client.callTool({
      name: "workspace_exec",
      arguments: { workspace_id: "mcp-one", command: "echo hi" },
    });
    expect(ran.isError).toBeFalsy();
    const r = toolPayload(ran);
    expect(r.stdout).toBe("hi\n");
    expect(r.exit_code).toBe(0);
    expect(r.execution_mode).toBe("host_compat");
    expect((ran.content as any)[0].text).toContain("hi");
    const del = await client.callTool({
      name: "workspace_delete",
      arguments: { workspace_id: ws.workspace_id },
    });
    expect(toolPayload(del).deleted).toBe(true);
  });

  test("the repro-fix loop through MCP tools: write, diff, patch, read, export, summary, reset", async () => {
    const { readFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const c = await client.callTool({
      name: "workspace_create",
      arguments: { name: "mcp-loop", allow_host_compat: true },
    });
    const id = toolPayload(c).workspace_id;
    const call = async (name: string, args: Record<string, unknown>) => {
      const r = await client.callTool({ name, arguments: { workspace_id: id, ...args } });
      return { err: r.isError === true, out: toolPayload(r) };
    };
    expect((await call("workspace_file_write", { path: "app.py", text: "print(1)\n" })).err).toBe(false);
    const d = await call("workspace_diff", {});
    expect(d.out.files.map((f: any) => [f.path, f.status])).toEqual([["app.py", "added"]]);
    const p = await call("workspace_patch_apply", {
      patch: "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-print(1)\n+print(2)\n",
    });
    expect(p.err).toBe(false);
    expect((await call("workspace_file_read", { path: "/workspace/app.py" })).out.content).toBe("print(2)\n");
    const listed = await call("workspace_file_list", { path: "/workspace" });
    expect(listed.out.entries.map((e: any) => e.path)).toEqual(["/workspace/app.py"]);
    const bad = await call("workspace_patch_apply", {
      patch: "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-nope\n+x\n",
    });
    expect(bad.err).toBe(true);
    expect(bad.out.code).toBe("PATCH_REJECTED");
    // Over MCP, exports land in the export dir (default $PYRO_HOME/exports; test/mcp-hostile.test.ts).
    expect((await call("workspace_export", { path: "app.py", output: "app.py" })).err).toBe(false);
    expect(readFileSync(join(home, "exports", "app.py"), "utf8")).toBe("print(2)\n");
    const sum = await call("workspace_summary", {});
    expect(sum.out.exports.length).toBe(1);
    const reset = await call("workspace_reset", {});
    expect(reset.out.restored_from).toBe("baseline");
    expect((await call("workspace_diff", {})).out.patch).toBe("");
    expect((await call("workspace_file_read", { path: "../etc/passwd" })).out.code).toBe(
      "PATH_OUTSIDE_WORKSPACE",
    );
    await call("workspace_delete", {});
  });

  test("vm_run returns the exit code as a result", async () => {
    const r = await client.callTool({
      name: "vm_run",
      arguments: { command: "echo out; exit 3", allow_host_compat: true },
    });
    expect(r.isError).toBeFalsy();
    expect(toolPayload(r).exit_code).toBe(3);
    expect(toolPayload(r).stdout).toBe("out\n");
  });

  test("malformed arguments are isError results with {code, message}", async () => {
    const bad = await client.callTool({
      name: "workspace_exec",
      arguments: { workspace_id: 42, command: "true" },
    });
    expect(bad.isError).toBe(true);
    expect(toolPayload(bad).code).toBe("INVALID_INPUT");
    const extra = await client.callTool({ name: "vm_run", arguments: { command: "true", bogus: 1 } });
    expect(toolPayload(extra).code).toBe("INVALID_INPUT");
    const neg = await client.callTool({
      name: "vm_run",
      arguments: { command: "true", timeout_seconds: -1, allow_host_compat: true },
    });
    expect(toolPayload(neg).code).toBe("INVALID_INPUT");
    const missing = await client.callTool({ name: "workspace_status", arguments: { workspace_id: "nope" } });
    expect(missing.isError).toBe(true);
    expect(toolPayload(missing).code).toBe("WORKSPACE_NOT_FOUND");
    expect(typeof toolPayload(missing).message).toBe("string");
    const unknown = await client.callTool({ name: "workspace_stop", arguments: { workspace_id: "x" } });
    expect(toolPayload(unknown).code).toBe("INVALID_INPUT");
  });
});

describe("profiles", () => {
  test("vm-run exposes vm_run only; workspace-full adds lifecycle and environments", async () => {
    const a = await connect("vm-run");
    expect((await a.client.listTools()).tools.map((t) => t.name)).toEqual(["vm_run"]);
    await a.client.close();
    const b = await connect("workspace-full");
    const names = (await b.client.listTools()).tools.map((t) => t.name);
    expect(names).toEqual(
      expect.arrayContaining(["workspace_start", "workspace_stop", "vm_list_environments"]),
    );
    await b.client.close();
  });
});
