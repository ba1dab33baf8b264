/**
 * MCP sizes, driven by the official client against dist/pyro mcp serve (host compat):
 * the request limit (an oversized request is refused, the connection lives on), the response
 * budget (big outputs arrive bounded, once, without dropping the client) and the server's RSS.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { MAX_OUTPUT_BYTES, RESPONSE_BUDGET, TEXT_WINDOW } from "../src/mcp/results.ts";
import { locateRequest, MAX_REQUEST_BYTES } from "../src/mcp/stdio.ts";
import { ensureBuilt, freshHome, PYRO, toolPayload } from "./helpers.ts";

const MiB = 1024 * 1024;
/** The bound docs/mcp.md states for the server's peak RSS while serving these calls. */
const RSS_BOUND_MIB = 256;

/** Peak resident set of a process (VmHWM), in MiB. */
function peakRssMib(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmHWM for ${pid}`);
  return Number(m[1]) / 1024;
}

describe("locating the id of an oversized request", () => {
  test("id first (Python SDK order) or last (TypeScript SDK order); nested ids are not taken", () => {
    expect(locateRequest('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{', "")).toEqual({
      id: 7,
      method: "tools/call",
    });
    expect(
      locateRequest('{"method":"tools/call","params":{"name":"x"', 'xx"}},"jsonrpc":"2.0","id":42}'),
    ).toEqual({ id: 42, method: "tools/call" });
    expect(locateRequest('{"method":"tools/list","params":{', '"},"id":"a\\"b"}\r').id).toBe('a"b');
    // an "id" that closes a nested object, or a method inside params, is not the request's
    expect(locateRequest('{"params":{"method":"tools/call"', '"x":{"id":3}}').id).toBeUndefined();
    expect(locateRequest('{"params":{"method":"tools/call"', "").method).toBeUndefined();
    expect(locateRequest('{"method":"tools/call","params":{"id":5,', '"abc"}}')).toEqual({
      id: undefined,
      method: "tools/call",
    });
  });
});

describe("mcp serve: request and response sizes", () => {
  let client: Client;
  let transport: StdioClientTransport;
  let pid = 0;
  let ws = "";
  const stderr: string[] = [];

  beforeAll(async () => {
    await ensureBuilt();
    transport = new StdioClientTransport({
      command: PYRO,
      cwd: process.env.PYRO_TEST_TMP, // outside any git checkout: no project
      args: ["mcp", "serve", "--allow-host-compat"],
      env: { ...(process.env as Record<string, string>), PYRO_HOME: freshHome(), PYRO_BACKEND: "host" },
      stderr: "pipe",
    });
    transport.stderr?.on("data", (b: Buffer) => stderr.push(b.toString()));
    client = new Client({ name: "pyro-sizes-test", version: "0.0.0" });
    await client.connect(transport);
    pid = transport.pid as number;
    const created = await client.callTool({
      name: "workspace_create",
      arguments: { allow_host_compat: true },
    });
    expect(created.isError).toBeFalsy();
    ws = toolPayload(created).workspace_id;
  });
  afterAll(async () => {
    if (ws) await client.callTool({ name: "workspace_delete", arguments: { workspace_id: ws } });
    await client.close();
  });

  test("a request under the limit is served; a 20 MiB one gets INPUT_TOO_LARGE and the connection goes on", async () => {
    const under = "u".repeat(MAX_REQUEST_BYTES - 64 * 1024);
    const ok = await client.callTool({
      name: "workspace_file_write",
      arguments: { workspace_id: ws, path: "under.txt", text: under },
    });
    expect(ok.isError).toBeFalsy();
    expect(toolPayload(ok).bytes_written).toBe(under.length);

    const big = await client.callTool({
      name: "workspace_file_write",
      arguments: { workspace_id: ws, path: "big.txt", text: "x".repeat(20 * MiB) },
    });
    expect(big.isError).toBe(true);
    const err = toolPayload(big);
    expect(err.code).toBe("INPUT_TOO_LARGE");
    expect(err.details.limit).toBe(MAX_REQUEST_BYTES);
    expect(err.details.bytes).toBeGreaterThan(20 * MiB);
    expect((big.content as any)[0].text).toContain("INPUT_TOO_LARGE");
    expect(process.kill(pid, 0)).toBe(true); // the server is still there

    const next = await client.callTool({
      name: "workspace_exec",
      arguments: { workspace_id: ws, command: "ls; wc -c under.txt" },
    });
    expect(next.isError).toBeFalsy();
    const r = toolPayload(next);
    expect(r.stdout).toBe(`under.txt\n${under.length} under.txt\n`); // big.txt was never written
    expect(peakRssMib(pid)).toBeLessThan(RSS_BOUND_MIB);
  });

  test("an oversized line that is no tool call gets a JSON-RPC error; garbage lines are answered too", async () => {
    // the client's own transport would refuse to send these, so write them to the server directly
    const p = Bun.spawn([PYRO, "mcp", "serve", "--allow-host-compat"], {
      env: { ...(process.env as Record<string, string>), PYRO_HOME: freshHome(), PYRO_BACKEND: "host" },
      stdin: "pipe",
      stdout: "pipe",
      stderr: "ignore",
    });
    const pad = "p".repeat(9 * MiB);
    p.stdin.write(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"${pad}"}}\n`);
    p.stdin.write("this is not json\n");
    p.stdin.write(`{"jsonrpc":"2.0","id":2,"method":"ping"}\n`);
    p.stdin.end();
    const lines = (await new Response(p.stdout).text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(await p.exited).toBe(0); // exits at end of input, not before
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ id: 1, error: { code: -32600, data: { code: "INPUT_TOO_LARGE" } } });
    expect(lines[1]).toMatchObject({ id: null, error: { code: -32700 } });
    expect(lines[2]).toEqual({ jsonrpc: "2.0", id: 2, result: {} });
  });

  test("exec printing 30 MiB with max_output_bytes 64 MiB: delivered clamped, bounded text, bounded RSS", async () => {
    const res = await client.callTool({
      name: "workspace_exec",
      arguments: {
        workspace_id: ws,
        command: "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 31457280; echo done >&2",
        max_output_bytes: 64 * MiB,
      },
    });
    expect(res.isError).toBeFalsy();
    const r = toolPayload(res);
    expect(r.exit_code).toBe(0);
    expect(r.stdout_truncated).toBe(true);
    expect(r.stdout_encoding).toBe("utf8");
    expect(r.stdout.length).toBe(MAX_OUTPUT_BYTES); // the MCP clamp, exactly
    expect(r.stdout.startsWith("0123456789abcdefghijklmnopqrstuvwxyz\n0123")).toBe(true);
    expect(r.stderr).toBe("done\n");
    // the text is a bounded rendering: a window of the output and where the rest is
    const text = (res.content as any)[0].text as string;
    expect(text.length).toBeLessThan(TEXT_WINDOW + 2048);
    expect(text).toContain("structuredContent.stdout");
    expect(text).toContain("stdout was truncated");
    expect(text).toContain("stderr:\ndone");
    expect(peakRssMib(pid)).toBeLessThan(RSS_BOUND_MIB);
  });

  test("output under the clamp arrives whole and once", async () => {
    const res = await client.callTool({
      name: "workspace_exec",
      arguments: { workspace_id: ws, command: "seq 1 400000", max_output_bytes: 4 * MiB },
    });
    const r = toolPayload(res);
    expect(r.stdout_truncated).toBe(false);
    const want = `${Array.from({ length: 400000 }, (_, i) => i + 1).join("\n")}\n`;
    expect(r.stdout).toBe(want);
    const text = (res.content as any)[0].text as string;
    expect(text.length).toBeLessThan(TEXT_WINDOW + 2048);
    expect(text).toContain("1\n2\n3\n");
    expect(text).toContain("399999\n400000");
  });

  test("output that JSON-escaping would blow past the budget is cut to fit, flagged, and the client stays", async () => {
    // 4 MiB of \x01 is valid UTF-8 but 24 MiB as JSON (\u0001): over the official client's 10 MiB line limit
    const res = await client.callTool({
      name: "workspace_exec",
      arguments: {
        workspace_id: ws,
        command: "head -c 4194304 /dev/zero | tr '\\0' '\\1'; head -c 4194304 /dev/zero | tr '\\0' '\\2' >&2",
        max_output_bytes: 4 * MiB,
      },
    });
    expect(res.isError).toBeFalsy();
    const r = toolPayload(res);
    expect(r.stdout_encoding).toBe("utf8");
    expect(r.stdout_truncated).toBe(true);
    expect(r.stderr_truncated).toBe(true);
    expect(r.stdout).toMatch(/^\x01+$/);
    expect(r.stderr).toMatch(/^\x02+$/);
    const size = Buffer.byteLength(JSON.stringify(res));
    expect(size).toBeLessThanOrEqual(RESPONSE_BUDGET);
    expect(size).toBeGreaterThan(RESPONSE_BUDGET / 2); // cut to the budget, not to nothing
    const after = await client.callTool({
      name: "workspace_exec",
      arguments: { workspace_id: ws, command: "echo still here" },
    });
    expect(toolPayload(after).stdout).toBe("still here\n");
    expect(peakRssMib(pid)).toBeLessThan(RSS_BOUND_MIB);
  });

  test("a 12 MiB binary file read (max_bytes 16 MiB) is cut to the budget with bytes_read to match", async () => {
    const made = await client.callTool({
      name: "workspace_exec",
      arguments: {
        workspace_id: ws,
        command: "head -c 12582912 /dev/urandom > big.bin; head -c 1024 big.bin | od -An -tx1 | tr -d ' \\n'",
      },
    });
    const headHex = toolPayload(made).stdout as string;
    expect(headHex).toMatch(/^[0-9a-f]{2048}$/);
    const res = await client.callTool({
      name: "workspace_file_read",
      arguments: { workspace_id: ws, path: "big.bin", max_bytes: 16 * MiB },
    });
    expect(res.isError).toBeFalsy();
    const r = toolPayload(res);
    expect(r.encoding).toBe("base64");
    expect(r.truncated).toBe(true);
    const bytes = Buffer.from(r.content, "base64");
    expect(r.bytes_read).toBe(bytes.length);
    expect(bytes.length).toBeGreaterThan(4 * MiB);
    expect(bytes.subarray(0, 1024).toString("hex")).toBe(headHex); // a prefix of the file
    expect(Buffer.byteLength(JSON.stringify(res))).toBeLessThanOrEqual(RESPONSE_BUDGET);
    expect(peakRssMib(pid)).toBeLessThan(RSS_BOUND_MIB);
  });
});
