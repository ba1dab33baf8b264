/**
 * Secrets in host compat (the CLI against a real supervisor and host agent): the shared leak
 * check and bad-input cases (test/secrets-cases.ts), plus what the MCP profiles expose.
 */
import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { serviceRecordPath } from "../src/manager/services.ts";
import { toolsFor } from "../src/mcp/tools.ts";
import { Pyro } from "../src/sdk/index.ts";
import { ensureBuilt, freshHome, PYRO, processesMatching, pyro, toolPayload } from "./helpers.ts";
import { badInput, findLeaks, leakCheck } from "./secrets-cases.ts";

const env = { PYRO_BACKEND: "host" };

describe("secrets (host compat)", () => {
  test("exec, detached exec, a shell, a service, errors, history, logs, summary, export, snapshot, reset: values never leak", async () => {
    await ensureBuilt();
    const home = freshHome();
    await leakCheck((args) => pyro(args, { home, env }), home, { guest: false });
  }, 300_000);

  test("bad input at create: stable codes, no value echoed, nothing left behind", async () => {
    await ensureBuilt();
    const home = freshHome();
    await badInput((args) => pyro(args, { home, env }), home, ["--allow-host-compat"]);
  }, 120_000);

  test("MCP (workspace-full): file_path is a confined host path; results and errors are redacted", async () => {
    await ensureBuilt();
    const home = freshHome();
    const base = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "secrets-mcp-"));
    const granted = join(base, "granted");
    mkdirSync(granted);
    const value = `mcp-${randomBytes(12).toString("hex")}`;
    writeFileSync(join(granted, "token"), `${value}\n`);
    writeFileSync(join(base, "outside"), `${value}\n`);
    const transport = new StdioClientTransport({
      command: PYRO,
      cwd: process.env.PYRO_TEST_TMP,
      args: [
        "mcp",
        "serve",
        "--allow-host-compat",
        "--profile",
        "workspace-full",
        "--allow-host-path",
        granted,
      ],
      env: { ...(process.env as Record<string, string>), PYRO_HOME: home, PYRO_BACKEND: "host" },
      stderr: "pipe",
    });
    const client = new Client({ name: "pyro-secrets", version: "0.0.0" });
    await client.connect(transport);
    const transcript: Array<[string, Buffer]> = [];
    const call = async (name: string, args: Record<string, unknown>) => {
      const r = await client.callTool({ name, arguments: args });
      transcript.push([name, Buffer.from(JSON.stringify(r))]);
      return { err: r.isError === true, out: toolPayload(r) };
    };
    try {
      const outside = await call("workspace_create", {
        allow_host_compat: true,
        secrets: [{ name: "T", file_path: join(base, "outside") }],
      });
      expect(outside.out.code).toBe("HOST_PATH_NOT_ALLOWED");
      const ws = await call("workspace_create", {
        allow_host_compat: true,
        secrets: [{ name: "T", file_path: join(granted, "token") }],
      });
      expect(ws.err).toBe(false);
      expect(ws.out.secrets).toEqual(["T"]);
      const id = ws.out.workspace_id;
      const ran = await call("workspace_exec", {
        workspace_id: id,
        command: 'printf %s "$T" | sha256sum; echo "$T"; echo "$T" | base64',
        secret_env: { T: "T" },
      });
      expect(ran.out.stdout).toBe(
        `${createHash("sha256").update(value).digest("hex")}  -\n[REDACTED:T]\n[REDACTED:T]\n`,
      );
      const missing = await call("workspace_exec", {
        workspace_id: id,
        command: "true",
        secret_env: { X: "X" },
      });
      expect(missing.out.code).toBe("SECRET_NOT_FOUND");
      const bad = await call("workspace_exec", {
        workspace_id: id,
        command: "true",
        cwd: `/workspace/${value}`,
      });
      expect(bad.err).toBe(true);
      await call("workspace_status", { workspace_id: id });
      await call("workspace_logs", { workspace_id: id });
      await call("workspace_delete", { workspace_id: id });
      expect(findLeaks([value], transcript)).toEqual([]);
    } finally {
      await client.close();
    }
  }, 120_000);

  test("a store that cannot be read back fails the start as a boot error (WORKSPACE_CORRUPT), stopped", async () => {
    await ensureBuilt();
    const home = freshHome();
    const run = (args: string[]) => pyro(args, { home, env });
    const c = await run([
      "workspace",
      "create",
      "--allow-host-compat",
      "--secret",
      "K=some-value-1",
      "--json",
    ]);
    expect(c.code).toBe(0);
    const id = c.json.workspace_id;
    try {
      expect((await run(["workspace", "stop", id])).code).toBe(0);
      writeFileSync(join(home, "workspaces", id, "secrets.key"), Buffer.alloc(32));
      const started = await run(["workspace", "start", id, "--json"]);
      expect({ code: started.code, error: started.json?.code }).toEqual({
        code: 65,
        error: "WORKSPACE_CORRUPT",
      });
      const st = await run(["workspace", "status", id, "--json"]);
      expect(st.json.state).toBe("stopped");
      expect(processesMatching(id)).toEqual([]);
    } finally {
      await run(["workspace", "delete", id]);
    }
  }, 120_000);

  test("SDK: createWorkspace takes secrets, execWorkspace and openShell take secret_env; output redacted", async () => {
    await ensureBuilt();
    const home = freshHome();
    const value = `sdk-${randomBytes(12).toString("hex")}`;
    const sdk = new Pyro({ home, env: { ...process.env, PYRO_BACKEND: "host" } });
    const ws = await sdk.createWorkspace({ allow_host_compat: true, secrets: [{ name: "K", value }] });
    try {
      expect(ws.secrets).toEqual(["K"]);
      const r = await sdk.execWorkspace(ws.workspace_id, 'printf %s "$KEY" | sha256sum; echo "$KEY"', {
        secret_env: { K: "KEY" },
      });
      expect("stdout" in r && r.stdout).toBe(
        `${createHash("sha256").update(value).digest("hex")}  -\n[REDACTED:K]\n`,
      );
      const err = await sdk.openShell(ws.workspace_id, { secret_env: { NOPE: "N" } }).then(
        () => null,
        (e) => e,
      );
      expect(err?.code).toBe("SECRET_NOT_FOUND");
    } finally {
      await sdk.deleteWorkspace(ws.workspace_id);
    }
  }, 120_000);

  test("a value typed into a service's command is redacted in its record (service.json, start, status, list)", async () => {
    await ensureBuilt();
    const home = freshHome();
    const run = (args: string[]) => pyro(args, { home, env });
    const value = `svc-${randomBytes(12).toString("hex")}`;
    const c = await run(["workspace", "create", "--allow-host-compat", "--secret", `K=${value}`, "--json"]);
    expect(c.code).toBe(0);
    const id = c.json.workspace_id;
    try {
      const argv = ["sh", "-c", `printf %s '${value}' | sha256sum; exec sleep 600`];
      const started = await run(["workspace", "service", "start", id, "api", "--json", "--", ...argv]);
      expect(started.code).toBe(0);
      // The probe: the service really ran the value (its sha256 in the log), and findLeaks
      // finds the value where it stands (the command as typed).
      let log = "";
      for (let i = 0; i < 120 && !log.includes("  -"); i++) {
        log = (await run(["workspace", "service", "logs", id, "api", "--json"])).json.stdout;
        if (!log.includes("  -")) await Bun.sleep(250);
      }
      expect(log).toBe(`${createHash("sha256").update(value).digest("hex")}  -\n`);
      expect(findLeaks([value], [["argv", Buffer.from(argv.join(" "))]])).not.toEqual([]);

      const status = await run(["workspace", "service", "status", id, "api", "--json"]);
      const list = await run(["workspace", "service", "list", id, "--json"]);
      const record = readFileSync(serviceRecordPath(home, id, "api"));
      expect(status.json.argv).toEqual(["sh", "-c", "printf %s '[REDACTED:K]' | sha256sum; exec sleep 600"]);
      expect(
        findLeaks(
          [value],
          [
            ["start", Buffer.from(started.stdout + started.stderr)],
            ["status", Buffer.from(status.stdout + status.stderr)],
            ["list", Buffer.from(list.stdout + list.stderr)],
            ["service.json", record],
          ],
        ),
      ).toEqual([]);
      expect((await run(["workspace", "service", "stop", id, "api"])).code).toBe(0);
    } finally {
      await run(["workspace", "delete", id]);
    }
  }, 120_000);

  test("MCP: workspace-core never exposes secrets; workspace-full does", () => {
    const fields = (profile: "workspace-core" | "workspace-full") =>
      toolsFor(profile).flatMap((op) =>
        Object.keys((op.input as any).entries ?? (op.input as any).pipe?.[0]?.entries ?? {})
          .filter((f) => f === "secrets" || f === "secret_env")
          .map((f) => `${op.name}.${f}`),
      );
    expect(fields("workspace-core")).toEqual([]);
    expect(fields("workspace-full")).toEqual(
      expect.arrayContaining([
        "shell_open.secret_env",
        "workspace_create.secrets",
        "workspace_exec.secret_env",
      ]),
    );
  });
});
