/**
 * Secrets in host compat (the CLI against a real supervisor and host agent): the shared leak
 * check and bad-input cases (test/secrets-cases.ts), plus what the MCP profiles expose.
 */
import { describe, expect, test } from "bun:test";
import { toolsFor } from "../src/mcp/tools.ts";
import { ensureBuilt, freshHome, pyro } from "./helpers.ts";
import { badInput, leakCheck } from "./secrets-cases.ts";

const env = { PYRO_BACKEND: "host" };

describe("secrets (host compat)", () => {
  test("exec, detached exec, a shell, errors, history, logs, summary, export, snapshot, reset: values never leak", async () => {
    await ensureBuilt();
    const home = freshHome();
    await leakCheck((args) => pyro(args, { home, env }), home, { guest: false });
  }, 300_000);

  test("bad input at create: stable codes, no value echoed, nothing left behind", async () => {
    await ensureBuilt();
    const home = freshHome();
    await badInput((args) => pyro(args, { home, env }), home, ["--allow-host-compat"]);
  }, 120_000);

  test("MCP: workspace-core never exposes secrets; workspace-full does", () => {
    const fields = (profile: "workspace-core" | "workspace-full") =>
      toolsFor(profile).flatMap((op) =>
        Object.keys((op.input as any).entries ?? (op.input as any).pipe?.[0]?.entries ?? {})
          .filter((f) => f === "secrets" || f === "secret_env")
          .map((f) => `${op.name}.${f}`),
      );
    expect(fields("workspace-core")).toEqual([]);
    expect(fields("workspace-full").sort()).toEqual([
      "shell_open.secret_env",
      "workspace_create.secrets",
      "workspace_exec.secret_env",
    ]);
  });
});
