/**
 * Remote MCP: `dist/pyro mcp serve --http 127.0.0.1:0` driven by the official SDK's
 * StreamableHTTPClientTransport (and by raw fetch where the test needs the HTTP status).
 * Workspaces run with allow_host_compat (the server is started with --allow-host-compat).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ensureBuilt, freshHome, processesMatching, pyro, toolPayload, waitFor } from "./helpers.ts";
import { connectHttp as connect, type Served, serveHttp, stopServer as stop } from "./http-server.ts";

/** `pyro mcp serve ARGS` with PYRO_HOME=home. */
const serve = (home: string, args: string[]) => serveHttp(home, ["mcp", "serve", ...args]);

/** One JSON-RPC POST, as a client would send it (the server is stateless: no initialize needed). */
function post(url: string, token: string | null, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    },
    body: typeof body === "string" || body instanceof ReadableStream ? body : JSON.stringify(body),
    ...init,
  });
}

const call = (name: string, args: Record<string, unknown>) => ({
  jsonrpc: "2.0",
  id: 1,
  method: "tools/call",
  params: { name, arguments: args },
});

let home: string;
let seed: string;
let server: Served;
let token: string;

beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
  seed = join(home, "..", `${home.split("/").pop()}-seed`);
  mkdirSync(seed);
  writeFileSync(join(seed, "app.txt"), "answer=5\n");
  server = await serve(home, [
    "--http",
    "127.0.0.1:0",
    "--allow-host-compat",
    "--allow-host-path",
    `${seed}:ro`,
    "--export-dir",
    join(home, "exports"),
  ]);
  token = readFileSync(join(home, "mcp-http.token"), "utf8").trim();
}, 120_000); // the build may run first

afterAll(async () => {
  if (server?.proc.exitCode === null) await stop(server);
});

describe("mcp serve --http", () => {
  test("the first start generates a 0600 token and prints it once; a restart reuses it silently", async () => {
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 random bytes, base64url
    expect(statSync(join(home, "mcp-http.token")).mode & 0o777).toBe(0o600);
    expect(server.stderr()).toContain(token);
    const again = await serve(home, ["--http", "127.0.0.1:0"]);
    try {
      expect(again.stderr()).not.toContain(token);
      const client = await connect(again.url, token); // the same token works on the second server
      expect((await client.listTools()).tools.length).toBeGreaterThan(0);
      await client.close();
    } finally {
      expect(await stop(again)).toBe(0);
    }
  });

  test("two clients run the repro-fix loop at once, each seeing the other's workspace", async () => {
    const [a, b] = await Promise.all([connect(server.url, token), connect(server.url, token)]);
    let arrived = 0;
    let release: () => void = () => {};
    const bothCreated = new Promise<void>((r) => (release = r));
    const loop = async (client: Client, name: string, other: string) => {
      const tool = async (tool: string, args: Record<string, unknown>) => {
        const r = await client.callTool({ name: tool, arguments: args });
        return { err: r.isError === true, out: toolPayload(r) };
      };
      const created = await tool("workspace_create", { name, seed_path: seed, allow_host_compat: true });
      expect(created.err).toBe(false);
      const id = created.out.workspace_id;
      if (++arrived === 2) release();
      await bothCreated;
      const listed = await tool("workspace_list", {});
      expect(listed.out.workspaces.map((w: { name: string }) => w.name)).toEqual(
        expect.arrayContaining([name, other]),
      );
      const check = { workspace_id: id, command: "grep -qx answer=4 app.txt" };
      expect((await tool("workspace_exec", check)).out.exit_code).toBe(1);
      expect((await tool("workspace_file_read", { workspace_id: id, path: "app.txt" })).out.content).toBe(
        "answer=5\n",
      );
      const patched = await tool("workspace_patch_apply", {
        workspace_id: id,
        patch: "--- a/app.txt\n+++ b/app.txt\n@@ -1 +1 @@\n-answer=5\n+answer=4\n",
      });
      expect(patched.err).toBe(false);
      expect((await tool("workspace_exec", check)).out.exit_code).toBe(0);
      const diff = await tool("workspace_diff", { workspace_id: id });
      expect(diff.out.files.map((f: { path: string; status: string }) => [f.path, f.status])).toEqual([
        ["app.txt", "modified"],
      ]);
      expect((await tool("workspace_delete", { workspace_id: id })).out.deleted).toBe(true);
      return id as string;
    };
    const ids = await Promise.all([loop(a, "issue-a", "issue-b"), loop(b, "issue-b", "issue-a")]);
    expect(new Set(ids).size).toBe(2);
    await Promise.all([a.close(), b.close()]);
    expect(readdirSync(join(home, "workspaces"))).toEqual([]);
  });

  test("no token, a wrong token of the same length or another length: 401, nothing created", async () => {
    const create = (n: string) => call("workspace_create", { name: n, allow_host_compat: true });
    // the probe works with the right token: it creates a workspace (stateless: no session id)
    const ok = await post(server.url, token, create("probe"));
    expect(ok.status).toBe(200);
    expect(ok.headers.get("mcp-session-id")).toBeNull();
    const probe = toolPayload(((await ok.json()) as { result: unknown }).result);
    expect(probe.name).toBe("probe");
    expect(readdirSync(join(home, "workspaces"))).toEqual([probe.workspace_id]);
    const last = token.at(-1) === "A" ? "B" : "A";
    const wrong = [null, `${token.slice(0, -1)}${last}`, "x", `${token}${token}`];
    for (const t of wrong) {
      const r = await post(server.url, t, create("intruder"));
      expect(r.status).toBe(401);
      expect(r.headers.get("www-authenticate")).toStartWith("Bearer");
      expect(r.headers.get("mcp-session-id")).toBeNull();
      // the official client gets the 401 too, before any session or tool call
      const refused = await connect(server.url, t).then(
        () => null,
        (e: Error & { code?: number }) => e,
      );
      expect(refused?.code).toBe(401);
    }
    expect(readdirSync(join(home, "workspaces"))).toEqual([probe.workspace_id]);
    const del = await post(server.url, token, call("workspace_delete", { workspace_id: "probe" }));
    expect(toolPayload(((await del.json()) as { result: unknown }).result).deleted).toBe(true);
  });

  test("a request body over 8 MiB is refused with 413 INPUT_TOO_LARGE, declared or streamed", async () => {
    const padded = (bytes: number) => JSON.stringify(call("workspace_list", { padding: "x".repeat(bytes) }));
    // just under the limit: read and parsed (the strict input schema refuses the extra field)
    const small = await post(server.url, token, padded(7 * 1024 * 1024));
    expect(small.status).toBe(200);
    expect(toolPayload(((await small.json()) as { result: unknown }).result).code).toBe("INVALID_INPUT");
    const body = padded(9 * 1024 * 1024);
    const declared = await post(server.url, token, body);
    expect(declared.status).toBe(413);
    const err = ((await declared.json()) as { error: { data: { code: string } } }).error;
    expect(err.data.code).toBe("INPUT_TOO_LARGE");
    // no Content-Length: a chunked stream is cut off once past the limit
    const bytes = new TextEncoder().encode(body);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < bytes.length; i += 1 << 20) c.enqueue(bytes.subarray(i, i + (1 << 20)));
        c.close();
      },
    });
    const streamed = await post(server.url, token, stream);
    expect(streamed.status).toBe(413);
    const cut = ((await streamed.json()) as { error: { data: { code: string; details: object } } }).error;
    expect(cut.data.code).toBe("INPUT_TOO_LARGE");
    expect(cut.data.details).toEqual({ limit: 8 * 1024 * 1024 }); // no declared size to report
  });

  test("--http refuses a non-loopback address; --listen takes it with a warning", async () => {
    const refused = await pyro(["mcp", "serve", "--http", "0.0.0.0:0"], { home });
    expect(refused.code).toBe(64);
    expect(refused.stderr).toContain("--listen 0.0.0.0:0");
    const open = await serve(home, ["--listen", "0.0.0.0:0"]);
    try {
      expect(open.stderr()).toContain("WARNING");
      const port = new URL(open.url).port;
      const client = await connect(`http://127.0.0.1:${port}/mcp`, token);
      expect((await client.listTools()).tools.length).toBeGreaterThan(0);
      await client.close();
    } finally {
      expect(await stop(open)).toBe(0);
    }
    const loop = await serve(home, ["--listen", "127.0.0.1:0"]);
    expect(loop.stderr()).not.toContain("WARNING"); // the probe: a loopback --listen does not warn
    expect(await stop(loop)).toBe(0);
  });

  test("--token-file: a given token is used; one readable by others is refused", async () => {
    const file = join(home, "..", `${home.split("/").pop()}-token`);
    const given = "g".repeat(40);
    writeFileSync(file, `${given}\n`, { mode: 0o600 });
    const s = await serve(home, ["--http", "127.0.0.1:0", "--token-file", file]);
    try {
      expect(s.stderr()).not.toContain(given);
      expect((await post(s.url, given, { jsonrpc: "2.0", id: 1, method: "tools/list" })).status).toBe(200);
      expect((await post(s.url, token, { jsonrpc: "2.0", id: 1, method: "tools/list" })).status).toBe(401);
    } finally {
      expect(await stop(s)).toBe(0);
    }
    chmodSync(file, 0o644);
    const r = await pyro(["mcp", "serve", "--http", "127.0.0.1:0", "--token-file", file], { home });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("chmod 600");
  });

  test("SIGTERM: a call in flight is answered, then the server exits 0 and leaves no process", async () => {
    const client = await connect(server.url, token);
    const created = toolPayload(
      await client.callTool({
        name: "workspace_create",
        arguments: { name: "slow", allow_host_compat: true },
      }),
    );
    const id = created.workspace_id as string;
    const started = join(home, "workspaces", id, "root", "started");
    const running = client.callTool({
      name: "workspace_exec",
      arguments: { workspace_id: id, command: "touch started; sleep 1; echo done" },
    });
    expect(await waitFor(() => statSync(started, { throwIfNoEntry: false }) !== undefined, 15000)).toBe(true);
    server.proc.kill("SIGTERM");
    expect(toolPayload(await running).stdout).toBe("done\n");
    expect(await server.proc.exited).toBe(0);
    await client.close().catch(() => {});
    // the workspace outlives the server (it belongs to its supervisor); clean it up by the CLI
    expect((await pyro(["workspace", "delete", id, "--json"], { home })).json.deleted).toBe(true);
    expect(
      await waitFor(() => processesMatching(home).length === 0 && processesMatching(id).length === 0),
    ).toBe(true);
  });
});
