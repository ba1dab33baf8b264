/**
 * Progress over MCP: a tool call whose request carries a progressToken (the official client
 * sends one when the caller passes onprogress) gets `notifications/progress` with increasing
 * `progress` and the step's line as `message`; a call without one gets none, and the result is
 * the same either way. Host compat keeps it quick (the create still reports its boot step).
 * The CLI's line form is checked in test/env-release.test.ts (env pull off a terminal) and the
 * rendering in src/base/progress.test.ts.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ensureBuilt, freshHome, PYRO, toolPayload } from "./helpers.ts";

let client: Client;
beforeAll(async () => {
  await ensureBuilt();
  const transport = new StdioClientTransport({
    command: PYRO,
    cwd: process.env.PYRO_TEST_TMP,
    args: ["mcp", "serve", "--profile", "workspace-full", "--allow-host-compat", "--no-project-source"],
    env: { ...(process.env as Record<string, string>), PYRO_HOME: freshHome(), PYRO_BACKEND: "host" },
    stderr: "pipe",
  });
  client = new Client({ name: "pyro-progress-test", version: "0.0.0" });
  await client.connect(transport);
}, 300_000);
afterAll(async () => {
  await client?.close();
});

test("a long tool call with a progressToken gets notifications/progress; without one, none", async () => {
  const seen: Array<{ progress: number; message?: string }> = [];
  const r = await client.callTool(
    {
      name: "workspace_create",
      arguments: { environment: "debian:12", name: "progress-a", allow_host_compat: true },
    },
    undefined,
    { onprogress: (p) => seen.push(p), timeout: 120_000 },
  );
  const created = toolPayload(r);
  expect(created.workspace_id).toMatch(/^ws_/);
  expect(seen.length).toBeGreaterThan(0);
  expect(seen.map((p) => p.progress)).toEqual(seen.map((_, i) => i + 1));
  expect(seen.map((p) => p.message).join("\n")).toContain("booting debian:12");

  // the same call without onprogress: no token, no notifications (the client would fail on a
  // notification for an unknown token), and the same kind of result
  const quiet = await client.callTool(
    {
      name: "workspace_create",
      arguments: { environment: "debian:12", name: "progress-b", allow_host_compat: true },
    },
    undefined,
    { timeout: 120_000 },
  );
  expect(toolPayload(quiet).workspace_id).toMatch(/^ws_/);
  for (const id of [created.workspace_id, toolPayload(quiet).workspace_id])
    await client.callTool({ name: "workspace_delete", arguments: { workspace_id: id } });
}, 300_000);
