/**
 * auto_pause_after_seconds without a VM: its bounds (INVALID_INPUT outside 0 and 10..2592000),
 * its refusal on a backend that cannot pause (host compat: BACKEND_UNAVAILABLE before anything
 * is made, never silently ignored), 0 meaning off, and its place on each face (CLI flag, record
 * field, MCP schema only in the profiles that have pause). The pause itself: auto-pause-guest.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { inputSchema, toolsFor } from "../src/mcp/tools.ts";
import { ensureBuilt, freshHome, processesMatching, pyro } from "./helpers.ts";

const home = freshHome();
const HC = { PYRO_BACKEND: "host" };
let id = "";

beforeAll(async () => {
  await ensureBuilt();
  const r = await pyro(
    [
      "workspace",
      "create",
      "debian:12",
      "--allow-host-compat",
      "--id-only",
      "--auto-pause-after-seconds",
      "0",
    ],
    {
      home,
      env: HC,
    },
  );
  expect(r.code).toBe(0);
  id = r.stdout.trim();
}, 120_000);

afterAll(async () => {
  if (!id) return;
  await pyro(["workspace", "delete", id], { home, env: HC });
  expect(processesMatching(id)).toEqual([]);
});

const workspaces = () => readdirSync(join(home, "workspaces")).filter((n) => n.startsWith("ws_"));

describe("auto_pause_after_seconds without a VM", () => {
  test("0 is off: the record says null", async () => {
    const s = await pyro(["workspace", "status", id, "--json"], { home, env: HC });
    expect(s.code).toBe(0);
    expect(s.json.auto_pause_after_seconds).toBeNull();
    expect(s.json.paused_by).toBeNull();
    expect(s.json.resumed_by).toBeNull();
  }, 60_000);

  test("outside 0 and 10..2592000 is INVALID_INPUT naming the field; nothing is made", async () => {
    const before = workspaces();
    for (const bad of ["5", "-1", "2592001", "12.5"]) {
      const r = await pyro(
        [
          "workspace",
          "create",
          "debian:12",
          "--allow-host-compat",
          "--json",
          "--auto-pause-after-seconds",
          bad,
        ],
        {
          home,
          env: HC,
        },
      );
      expect(r.code).toBe(64);
      expect(r.json.code).toBe("INVALID_INPUT");
      expect(r.json.message).toContain("auto_pause_after_seconds");
    }
    expect(workspaces()).toEqual(before);
  }, 60_000);

  test("on host compat (no machine state to save) it is BACKEND_UNAVAILABLE at create and update", async () => {
    const before = workspaces();
    const c = await pyro(
      [
        "workspace",
        "create",
        "debian:12",
        "--allow-host-compat",
        "--json",
        "--auto-pause-after-seconds",
        "60",
      ],
      {
        home,
        env: HC,
      },
    );
    expect(c.code).toBe(69);
    expect(c.json.code).toBe("BACKEND_UNAVAILABLE");
    expect(c.json.hint).toContain("qemu");
    expect(workspaces()).toEqual(before);
    const u = await pyro(["workspace", "update", id, "--json", "--auto-pause-after-seconds", "60"], {
      home,
      env: HC,
    });
    expect(u.json.code).toBe("BACKEND_UNAVAILABLE");
    const off = await pyro(["workspace", "update", id, "--json", "--auto-pause-after-seconds", "0"], {
      home,
      env: HC,
    });
    expect(off.code).toBe(0);
    expect(off.json.auto_pause_after_seconds).toBeNull();
  }, 60_000);

  test("--help documents the flag and its rules", async () => {
    const h = await pyro(["workspace", "create", "--help"], { home, env: HC });
    expect(h.stdout).toContain("--auto-pause-after-seconds");
    expect(h.stdout).toContain("resumes it first");
  }, 60_000);

  test("MCP offers it on workspace_create and workspace_update in workspace-full only (core has no pause)", () => {
    const fields = (profile: "workspace-core" | "workspace-full", tool: string) => {
      const op = toolsFor(profile).find((o) => o.name === tool);
      return Object.keys((inputSchema(op!).properties ?? {}) as Record<string, unknown>);
    };
    for (const tool of ["workspace_create", "workspace_update"]) {
      expect(fields("workspace-core", tool)).not.toContain("auto_pause_after_seconds");
    }
    expect(fields("workspace-full", "workspace_create")).toContain("auto_pause_after_seconds");
    expect(fields("workspace-full", "workspace_update")).toContain("auto_pause_after_seconds");
    // the probe sees fields at all: core's create has seed_path
    expect(fields("workspace-core", "workspace_create")).toContain("seed_path");
  });
});
