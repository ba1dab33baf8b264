/** Test helpers for `pyro mcp serve --http`: start it like a user would, connect the official client. */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { PYRO, waitFor } from "./helpers.ts";

export interface Served {
  proc: Bun.Subprocess<"ignore", "ignore", "pipe">;
  /** the MCP endpoint the server announced */
  url: string;
  /** everything the server wrote to stderr so far */
  stderr: () => string;
}

/** Start `dist/pyro ARGV` (an `mcp serve --http|--listen` line) and wait for the URL it announces. */
export async function serveHttp(home: string, argv: string[]): Promise<Served> {
  const proc = Bun.spawn([PYRO, ...argv], {
    cwd: process.env.PYRO_TEST_TMP, // outside any git checkout: no project
    env: { ...(process.env as Record<string, string>), PYRO_HOME: home, PYRO_BACKEND: "host" },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  let text = "";
  void (async () => {
    const reader = proc.stderr.getReader();
    const decoder = new TextDecoder();
    for (let r = await reader.read(); !r.done; r = await reader.read())
      text += decoder.decode(r.value, { stream: true });
  })();
  const announced = /at (http:\/\/\S+)/;
  await waitFor(() => announced.test(text) || proc.exitCode !== null, 15000);
  const url = announced.exec(text)?.[1];
  if (!url) {
    proc.kill("SIGKILL");
    throw new Error(`mcp serve did not start: ${text}`);
  }
  return { proc, url, stderr: () => text };
}

/** SIGTERM, as a service manager stops it; resolves to the exit code. */
export async function stopServer(s: Served): Promise<number> {
  s.proc.kill("SIGTERM");
  return await s.proc.exited;
}

/** The official client over streamable HTTP, with `Authorization: Bearer token` unless null. */
export async function connectHttp(url: string, token: string | null): Promise<Client> {
  const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
  const client = new Client({ name: "pyro-http-test", version: "0.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}
