/** Helpers for integration tests: run the compiled executables like a user would. */
import { expect } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { join, resolve } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

export const REPO = resolve(import.meta.dir, "..");
export const PYRO = join(REPO, "dist", "pyro");
export const AGENT = join(REPO, "dist", "pyro-agent");

let built = false;
/** Build dist/ once per test process (hash-cached, so cheap when up to date). */
export async function ensureBuilt(): Promise<void> {
  if (built && existsSync(PYRO)) return;
  const p = Bun.spawn([process.execPath, join(REPO, "scripts", "build.ts")], {
    stdout: "inherit",
    stderr: "inherit",
    cwd: REPO,
  });
  if ((await p.exited) !== 0) throw new Error("build failed");
  built = true;
}

/** A fresh PYRO_HOME for a test that wants isolation from its neighbours. */
export function freshHome(): string {
  return mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "home-"));
}

export interface PyroResult {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

export async function pyro(
  args: string[],
  opts: { home?: string; env?: Record<string, string>; cwd?: string; stdin?: string } = {},
): Promise<PyroResult> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...(opts.env ?? {}) };
  if (opts.home) env.PYRO_HOME = opts.home;
  const p = Bun.spawn([PYRO, ...args], {
    env,
    cwd: opts.cwd ?? process.env.PYRO_TEST_TMP,
    stdout: "pipe",
    stderr: "pipe",
    stdin: opts.stdin ? new TextEncoder().encode(opts.stdin) : "ignore",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  let json: any = null;
  try {
    json = JSON.parse(stdout);
  } catch {}
  return { code, stdout, stderr, json };
}

/** Processes whose command line mentions `needle` (for leak checks). */
export function processesMatching(needle: string): string[] {
  const out: string[] = [];
  for (const pid of new Bun.Glob("[0-9]*").scanSync({ cwd: "/proc", onlyFiles: false })) {
    try {
      const cmd = require("node:fs").readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      const stat = require("node:fs").readFileSync(`/proc/${pid}/stat`, "utf8");
      if (stat.split(" ")[2] === "Z") continue; // zombies hold nothing
      if (cmd.includes(needle) && Number(pid) !== process.pid) out.push(`${pid} ${cmd}`);
    } catch {}
  }
  return out;
}

/**
 * `workspace create ARGS --json` through `run` (a file's one shared workspace, made in its
 * beforeAll): fails unless it succeeded, in `mode` when given; the workspace's id.
 */
export async function createWorkspaceOk(
  run: (args: string[]) => Promise<PyroResult>,
  args: string[],
  mode?: "guest" | "host_compat",
): Promise<string> {
  const c = await run(["workspace", "create", ...args, "--json"]);
  expect(c.code).toBe(0);
  if (mode) expect(c.json.execution_mode).toBe(mode);
  return c.json.workspace_id;
}

/** Delete a file's shared workspace (nothing when `ws` is empty) and check none of its processes is left. */
export async function deleteWorkspaceLeavingNothing(
  run: (args: string[]) => Promise<PyroResult>,
  ws: string,
): Promise<void> {
  if (!ws) return;
  await run(["workspace", "delete", ws]);
  expect(processesMatching(ws)).toEqual([]);
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 10000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return true;
    await Bun.sleep(50);
  }
  return false;
}

/**
 * What an MCP tool call returned: `structuredContent` on success, the `{code, message,
 * hint?, details?}` error object (the text content, as JSON) on an isError result.
 */
export function toolPayload(r: any): any {
  if (r?.isError) {
    const text = r.content?.[0]?.text ?? "";
    try {
      return JSON.parse(text);
    } catch {
      return { code: undefined, message: text };
    }
  }
  return r?.structuredContent;
}

/**
 * A chat client's session with `dist/pyro mcp serve <args>` (the official MCP client over
 * stdio, PYRO_HOME = home): `call` returns the payload or throws with the error, `callError`
 * expects an isError result and returns its error object. Calls get 10 minutes (boots under
 * TCG); the SDK's default is 60 s.
 */
export async function mcpSession(name: string, args: string[], opts: { home: string; cwd?: string }) {
  const transport = new StdioClientTransport({
    command: PYRO,
    cwd: opts.cwd,
    args: ["mcp", "serve", ...args],
    env: { ...(process.env as Record<string, string>), PYRO_HOME: opts.home },
    stderr: "pipe",
  });
  const client = new Client({ name, version: "0.0.0" });
  await client.connect(transport);
  const long = { timeout: 600_000 };
  return {
    client,
    async call(tool: string, input: Record<string, unknown>): Promise<any> {
      const r = await client.callTool({ name: tool, arguments: input }, undefined, long);
      const payload = toolPayload(r);
      if (r.isError) throw new Error(`${tool} failed: ${JSON.stringify(payload)}`);
      return payload;
    },
    async callError(tool: string, input: Record<string, unknown>): Promise<any> {
      const r = await client.callTool({ name: tool, arguments: input }, undefined, long);
      expect(r.isError).toBe(true);
      return toolPayload(r);
    },
  };
}
