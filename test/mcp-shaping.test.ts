/**
 * MCP text shaped for a model (docs/public-contract.md, "MCP text shaping"), driven by the
 * official client against dist/pyro mcp serve --profile workspace-full (host compat): the text
 * stays under text_budget_chars with head, tail and an omission line naming the exact call,
 * colours and \r rewrites are gone from it, and structuredContent keeps the raw capped bytes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { cleanTerminalText, TEXT_WINDOW } from "../src/mcp/results.ts";
import { ensureBuilt, freshHome, PYRO, toolPayload } from "./helpers.ts";

const MiB = 1024 * 1024;
let client: Client;
let ws = "";
const text = (res: any): string => res.content[0].text;
const call = async (name: string, args: Record<string, unknown>) => {
  const res = await client.callTool({ name, arguments: args });
  return { res, out: toolPayload(res), text: text(res) };
};
/** 1 MiB and more of green numbered lines, each a \r progress rewrite. */
const COLOURED =
  "i=0; while [ $i -lt 16000 ]; do printf '\\033[32mline %05d\\033[0m 50%%\\r done %05d %s\\n' $i $i abcdefghijklmnopqrstuvwxyz0123456789; i=$((i+1)); done";

beforeAll(async () => {
  await ensureBuilt();
  const transport = new StdioClientTransport({
    command: PYRO,
    cwd: process.env.PYRO_TEST_TMP, // outside any git checkout: no project
    args: ["mcp", "serve", "--profile", "workspace-full", "--allow-host-compat"],
    env: { ...(process.env as Record<string, string>), PYRO_HOME: freshHome(), PYRO_BACKEND: "host" },
    stderr: "ignore",
  });
  client = new Client({ name: "pyro-shaping-test", version: "0.0.0" });
  await client.connect(transport);
  ws = (await call("workspace_create", { allow_host_compat: true })).out.workspace_id;
}, 120_000);
afterAll(async () => {
  if (ws) await client.callTool({ name: "workspace_delete", arguments: { workspace_id: ws } });
  await client.close();
});

describe("MCP text shaping", () => {
  test("the cleaner: colours gone, \\r lines at their final state, backspaces applied", () => {
    expect(cleanTerminalText("a\rb\n\x1b[1;31mred\x1b[0m\n10%\r50%\r100%\r\nab\bc\x1b]0;title\x07!\n")).toBe(
      "b\nred\n100%\nac!\n",
    );
  });

  test("an exec printing 1 MiB with colours: text under the budget with head, tail and the omission line; raw capped bytes in structuredContent", async () => {
    for (const budget of [undefined, 4000]) {
      const {
        res,
        out,
        text: t,
      } = await call("workspace_exec", {
        workspace_id: ws,
        command: COLOURED,
        ...(budget ? { text_budget_chars: budget } : {}),
      });
      expect(res.isError).toBeFalsy();
      // structuredContent: the raw bytes, capped at the default 1 MiB and flagged
      expect(out.stdout.length).toBe(MiB);
      expect(out.stdout_truncated).toBe(true);
      expect(out.stdout.startsWith("\x1b[32mline 00000\x1b[0m 50%\r done 00000")).toBe(true);
      // the text: bounded, clean, head and tail around the omission line
      expect(t.length).toBeLessThanOrEqual(budget ?? TEXT_WINDOW);
      expect(t).not.toContain("\x1b");
      expect(t).not.toContain("\r");
      expect(t).toContain(" done 00000 abcdef");
      expect(t).not.toContain("line 00000");
      const shown = [...t.matchAll(/ done (\d{5}) /g)].map((m) => Number(m[1]));
      expect(Math.max(...shown)).toBeGreaterThan(14000); // the tail window: the last lines kept
      const omitted = t.split("\n").filter((l) => l.startsWith("[… "));
      expect(omitted).toHaveLength(1);
      expect(omitted[0]).toMatch(
        /^\[… \d+ bytes omitted \(from byte \d+\); read more with structuredContent\.stdout/,
      );
      expect(omitted[0]).toContain('"detach":true');
      expect(t).toContain(`[stdout: ${MiB} bytes kept; stdout was truncated`);
    }
  });

  test("exec_read's omission line is the exact exec_read call that returns the omitted bytes", async () => {
    const start = await call("workspace_exec", { workspace_id: ws, command: COLOURED, detach: true });
    expect(start.out.state).toBe("running");
    expect(start.text).toContain(`exec_read {"workspace_id":"${ws}","exec_id":"${start.out.exec_id}"`);
    const waited = await call("exec_wait", {
      workspace_id: ws,
      exec_id: start.out.exec_id,
      timeout_seconds: 120,
    });
    expect(waited.out).toMatchObject({ state: "exited", exit_code: 0 });
    expect(waited.out.stdout_bytes).toBeGreaterThan(MiB);

    const read = await call("exec_read", {
      workspace_id: ws,
      exec_id: start.out.exec_id,
      max_bytes: 200_000,
      text_budget_chars: 3000,
    });
    expect(read.text.length).toBeLessThanOrEqual(3000);
    expect(read.out.data.length).toBe(200_000); // structuredContent: the raw window
    const line = read.text.split("\n").find((l) => l.startsWith("[… ")) as string;
    const m = /read more with exec_read (\{.*\}) …\]$/.exec(line);
    expect(m).not.toBeNull();
    const args = JSON.parse(m?.[1] as string);
    const more = await call("exec_read", args);
    // the omitted bytes are exactly the ones between the head and the tail the text showed
    expect(more.out.data).toBe(read.out.data.slice(args.offset, args.offset + args.max_bytes));
    expect(read.text).toContain(`read on with exec_read`);
    expect(read.text).toContain(`"offset":200000`);
  });

  test("shell_read: cleaned text under the budget, the omission line is the exact shell_read of the omitted characters, raw bytes in structuredContent", async () => {
    const sh = (await call("shell_open", { workspace_id: ws })).out.shell_id;
    // 6000 coloured lines (~450 KB): one read carries them all (a read answers with at most ~1 MiB of JSON)
    const lines6000 = COLOURED.replace("-lt 16000", "-lt 6000");
    await call("shell_write", { workspace_id: ws, shell_id: sh, input: `${lines6000}; echo END-$((40+2))` });
    const readAll = () =>
      call("shell_read", {
        workspace_id: ws,
        shell_id: sh,
        cursor: 0,
        max_chars: 4 * MiB,
        wait_for_idle_ms: 500,
        text_budget_chars: 3000,
      });
    let read = await readAll();
    for (let i = 0; i < 120 && !/^END-42\r?$/m.test(read.out.output); i++) read = await readAll();
    const { out, text: t } = read;
    expect(out.output).toMatch(/^END-42\r?$/m);
    expect(out.output.length).toBeGreaterThan(300_000);
    expect(out.has_more).toBe(false);
    expect(out.output).toContain("\x1b[32mline 00000\x1b[0m 50%\r done 00000"); // raw, as the PTY gave it
    expect(t.length).toBeLessThanOrEqual(3000);
    expect(t).not.toContain("\x1b");
    expect(t).not.toContain("\r");
    expect(t).toContain(" done 00000 abcdef");
    expect(t).not.toContain("line 00000");
    expect(t).toContain("END-42");
    const omitted = t.split("\n").filter((l) => l.startsWith("[… "));
    expect(omitted).toHaveLength(1);
    const m = /read more with shell_read (\{.*\}) …\]$/.exec(omitted[0] as string);
    expect(m).not.toBeNull();
    const args = JSON.parse(m?.[1] as string);
    const more = await call("shell_read", args);
    // exactly the characters between the head and the tail the text showed
    const at = args.cursor - out.cursor;
    expect(more.out.output).toBe(out.output.slice(at, at + args.max_chars));
    expect(t).toContain(`"cursor":${out.next_cursor}`);
    // over a frame's worth: the read stops early with has_more, and reading on continues exactly
    const from = out.next_cursor;
    await call("shell_write", { workspace_id: ws, shell_id: sh, input: `${COLOURED}; echo END-$((40+3))` });
    const readOn = (cursor: number) =>
      call("shell_read", {
        workspace_id: ws,
        shell_id: sh,
        cursor,
        max_chars: 4 * MiB,
        wait_for_idle_ms: 500,
      });
    let big = await readOn(from);
    for (let i = 0; i < 120 && !big.out.has_more && !/^END-43\r?$/m.test(big.out.output); i++)
      big = await readOn(from);
    expect(big.res.isError).toBeFalsy();
    expect(big.out.has_more).toBe(true);
    expect(big.out.output.length).toBeLessThan(MiB);
    const rest = await readOn(big.out.next_cursor);
    expect(rest.out.cursor).toBe(big.out.next_cursor);
    await call("shell_close", { workspace_id: ws, shell_id: sh });
  }, 120_000);

  test("text_budget_chars is MCP-only and bounded", async () => {
    const tools = (await client.listTools()).tools;
    const exec = tools.find((t) => t.name === "workspace_exec") as any;
    expect(exec.inputSchema.properties.text_budget_chars.type).toBe("integer");
    expect(exec.outputSchema.type).toBe("object");
    expect(exec.outputSchema.anyOf).toHaveLength(2);
    const bad = await call("workspace_exec", { workspace_id: ws, command: "true", text_budget_chars: 10 });
    expect(bad.res.isError).toBe(true);
    expect(bad.out.code).toBe("INVALID_INPUT");
    expect(tools.find((t) => t.name === "workspace_status")?.inputSchema.properties).not.toHaveProperty(
      "text_budget_chars",
    );
  });
});
