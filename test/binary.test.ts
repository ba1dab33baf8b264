/**
 * Binary-safe exec output: 300 KB of /dev/urandom written by a command comes back byte-exact
 * through CLI --json, the SDK and MCP (stdout_encoding: base64), raw in CLI human mode, and
 * text stays text (stdout_encoding: utf8). Host compat for all faces, plus a real guest via the SDK.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { Pyro } from "../src/sdk/index.ts";
import { guest, guestHome } from "./guest-env.ts";
import { ensureBuilt, freshHome, PYRO, pyro, toolPayload } from "./helpers.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const MAKE = "head -c 300000 /dev/urandom > rand.bin && sha256sum rand.bin | cut -d' ' -f1";
const MIXED = "printf 'h\\303\\251llo\\n'; cat rand.bin >&2";

/** The bytes an exec result's stream stands for, by its encoding field. */
function bytesOf(r: Record<string, any>, stream: "stdout" | "stderr"): Buffer {
  const enc = r[`${stream}_encoding`];
  expect(["utf8", "base64"]).toContain(enc);
  return Buffer.from(r[stream], enc === "base64" ? "base64" : "utf8");
}

/** What every face must show for `cat rand.bin` and for MIXED. */
function expectBinarySafe(cat: Record<string, any>, mixed: Record<string, any>, digest: string) {
  expect(cat.stdout_encoding).toBe("base64");
  expect(cat.stdout_truncated).toBe(false);
  const got = bytesOf(cat, "stdout");
  expect(got.length).toBe(300000);
  expect(sha(got)).toBe(digest);
  expect(cat.stderr_encoding).toBe("utf8");
  expect(cat.stderr).toBe("");
  // the flag is per stream: text next to binary stays text
  expect(mixed.stdout_encoding).toBe("utf8");
  expect(mixed.stdout).toBe("héllo\n");
  expect(mixed.stderr_encoding).toBe("base64");
  expect(sha(bytesOf(mixed, "stderr"))).toBe(digest);
}

describe("binary exec output (host compat)", () => {
  let home = "";
  let ws = "";
  let digest = "";
  let sdk: Pyro;
  beforeAll(async () => {
    await ensureBuilt();
    home = freshHome();
    const c = await pyro(["workspace", "create", "--allow-host-compat", "--json"], { home });
    expect(c.code).toBe(0);
    ws = c.json.workspace_id;
    const made = await pyro(["workspace", "exec", ws, "--json", "--", "sh", "-c", MAKE], { home });
    expect(made.json.stdout_encoding).toBe("utf8");
    digest = made.json.stdout.trim();
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    sdk = new Pyro({ home, env: { ...process.env, PYRO_BACKEND: "host" } });
  });
  afterAll(async () => {
    if (ws) await pyro(["workspace", "delete", ws, "--json"], { home });
  });

  test("CLI --json", async () => {
    const cat = await pyro(["workspace", "exec", ws, "--json", "--", "cat", "rand.bin"], { home });
    const mixed = await pyro(["workspace", "exec", ws, "--json", "--", "sh", "-c", MIXED], { home });
    expect(cat.code).toBe(0);
    expectBinarySafe(cat.json, mixed.json, digest);
  });

  test("CLI file read --content-only prints the file's exact bytes (its CLI-only flag)", async () => {
    const read = (args: string[]) =>
      Bun.spawn([PYRO, "workspace", "file", "read", ws, "rand.bin", ...args], {
        env: { ...(process.env as Record<string, string>), PYRO_HOME: home },
        stdout: "pipe",
        stderr: "pipe",
      });
    const raw = read(["--content-only", "--max-bytes", "400000"]);
    const out = new Uint8Array(await new Response(raw.stdout).arrayBuffer());
    expect(await raw.exited).toBe(0);
    expect(sha(out)).toBe(digest);
    // without the flag the human rendering marks base64; with --json the flag changes nothing
    const human = read(["--max-bytes", "400000"]);
    expect((await new Response(human.stdout).text()).startsWith("[binary, base64]\n")).toBe(true);
    const json = await pyro(
      ["workspace", "file", "read", ws, "rand.bin", "--max-bytes", "400000", "--json"],
      { home },
    );
    expect(json.json.encoding).toBe("base64");
    expect(sha(Buffer.from(json.json.content, "base64"))).toBe(digest);
    // over MCP and the SDK the flag does not exist: it is a CLI face extra
    expect(
      (
        await sdk
          .call("workspace_file_read", { workspace_id: ws, path: "rand.bin", content_only: true })
          .catch((e) => e)
      ).code,
    ).toBe("INVALID_INPUT");
  });

  test("CLI human mode writes the raw bytes", async () => {
    const p = Bun.spawn([PYRO, "workspace", "exec", ws, "--", "cat", "rand.bin"], {
      env: { ...(process.env as Record<string, string>), PYRO_HOME: home },
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = new Uint8Array(await new Response(p.stdout).arrayBuffer());
    expect(await p.exited).toBe(0);
    expect(out.length).toBe(300000);
    expect(sha(out)).toBe(digest);
  });

  test("SDK", async () => {
    const cat = await sdk.execWorkspace(ws, ["cat", "rand.bin"]);
    const mixed = await sdk.execWorkspace(ws, MIXED);
    expectBinarySafe(cat, mixed, digest);
    // one-shot run is shaped by the same code
    const run = await sdk.run({ command: "head -c 1000 /dev/urandom", allow_host_compat: true });
    expect(run.stdout_encoding).toBe("base64");
    expect(bytesOf(run, "stdout").length).toBe(1000);
  });

  test("MCP: structuredContent carries the bytes once; the text says base64 without dumping it", async () => {
    const transport = new StdioClientTransport({
      command: PYRO,
      cwd: process.env.PYRO_TEST_TMP, // outside any git checkout: no project
      args: ["mcp", "serve", "--allow-host-compat"],
      env: { ...(process.env as Record<string, string>), PYRO_HOME: home, PYRO_BACKEND: "host" },
      stderr: "pipe",
    });
    const client = new Client({ name: "pyro-binary-test", version: "0.0.0" });
    await client.connect(transport);
    try {
      const call = async (command: string) => {
        const res = await client.callTool({
          name: "workspace_exec",
          arguments: { workspace_id: ws, command },
        });
        expect(res.isError).toBeFalsy();
        return res;
      };
      const cat = await call("cat rand.bin");
      const mixed = await call(MIXED);
      expectBinarySafe(toolPayload(cat), toolPayload(mixed), digest);
      const text = (cat.content as any)[0].text as string;
      expect(text).toContain("stdout: 300000 bytes that are not UTF-8 text, base64-encoded");
      expect(text.length).toBeLessThan(1000);
      expect((mixed.content as any)[0].text).toContain("stdout:\nhéllo\n");
    } finally {
      await client.close();
    }
  });

  test("a character cut by truncation is dropped whole: truncated text stays utf8", async () => {
    // 'é' is 2 bytes: a cap of 3 bytes ends inside the second one
    const r = await sdk.execWorkspace(ws, "printf '\\303\\251\\303\\251'", { max_output_bytes: 3 });
    expect(r.stdout_truncated).toBe(true);
    expect(r.stdout_encoding).toBe("utf8");
    expect(r.stdout).toBe("é");
  });
});

guest.describe("real guest: binary exec output", () => {
  test("real guest: 300 KB of /dev/urandom round-trips byte-exact through the SDK", async () => {
    const home = await guestHome();
    const sdk = new Pyro({ home });
    const w = await sdk.createWorkspace({ environment: "debian:12" });
    const id = w.workspace_id as string;
    try {
      expect(w.execution_mode).toBe("guest");
      const made = await sdk.execWorkspace(id, MAKE);
      expect(made.exit_code).toBe(0);
      const digest = made.stdout.trim();
      const cat = await sdk.execWorkspace(id, ["cat", "rand.bin"]);
      const mixed = await sdk.execWorkspace(id, MIXED);
      expectBinarySafe(cat, mixed, digest);
    } finally {
      await sdk.deleteWorkspace(id);
    }
  }, 600_000);
});
