/**
 * Acceptance: a hostile (prompt-injected) chat model driving `pyro mcp serve` through the
 * official MCP client reaches only the host paths the user granted. CLI-only file fields
 * are not in the schemas and are refused; seed/sync sources and export outputs outside the
 * granted roots — spelled absolute, with `..`, through a symlink inside a granted root, or
 * a read-only root used for export — are HOST_PATH_NOT_ALLOWED; a planted host secret never
 * reaches the workspace or any tool output; error text names no host path. Each refusal is
 * preceded by the allowed case it mirrors (the probe works). Host-compat workspaces, so it
 * runs anywhere.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { flagSpecs } from "../src/cli/flags.ts";
import { HostPathPolicy } from "../src/mcp/host-paths.ts";
import { mcpView } from "../src/mcp/tools.ts";
import { OPERATIONS, type AnyOperation as Operation } from "../src/operations/index.ts";
import { ensureBuilt, freshHome, PYRO, pyro, toolPayload } from "./helpers.ts";

const NONCE = crypto.randomUUID();
const TOKEN = `pyro-secret-${NONCE}`;
/** Lists files holding TOKEN; the command text itself never contains TOKEN contiguously. */
const FIND_TOKEN = `grep -rl "pyro-secret-""${NONCE}" . || true`;
const tmp = process.env.PYRO_TEST_TMP ?? "/tmp";
const base = mkdtempSync(join(tmp, "hostile-"));
const secret = join(base, "secret"); // never granted
const ro = join(base, "ro"); // granted read-only
const rw = join(base, "rw"); // granted read-write
const home = freshHome();
const exportDir = join(home, "exports"); // the default
/** Every tool result's JSON, to prove the token never comes back. */
const transcript: string[] = [];

let client: Client;

async function call(name: string, args: Record<string, unknown>) {
  const r = await client.callTool({ name, arguments: args });
  transcript.push(JSON.stringify(r));
  return {
    err: r.isError === true,
    out: toolPayload(r),
    text: (r.content as any)[0]?.text ?? "",
  };
}

/** The call is refused with HOST_PATH_NOT_ALLOWED, with the flag in the hint and no host path in the text. */
async function refused(name: string, args: Record<string, unknown>) {
  const r = await call(name, args);
  expect({ name, args, code: r.out?.code }).toEqual({ name, args, code: "HOST_PATH_NOT_ALLOWED" });
  expect(r.out.hint).toContain("--allow-host-path");
  noHostPaths(r);
}

function noHostPaths(r: { out: unknown; text: string }) {
  for (const s of [r.text, JSON.stringify(r.out)]) {
    expect(s).not.toContain(base);
    expect(s).not.toContain(home);
  }
}

beforeAll(async () => {
  await ensureBuilt();
  mkdirSync(secret);
  writeFileSync(join(secret, "token.txt"), `${TOKEN}\n`);
  mkdirSync(join(ro, "seed"), { recursive: true });
  writeFileSync(join(ro, "seed", "hello.txt"), "hello from the seed\n");
  symlinkSync(secret, join(ro, "escape")); // a symlink inside a granted root pointing out
  symlinkSync(join(secret, "token.txt"), join(ro, "escape-file"));
  mkdirSync(join(rw, "more"), { recursive: true });
  writeFileSync(join(rw, "more", "more.txt"), "more\n");
  symlinkSync(secret, join(rw, "escape"));
  const tar = Bun.spawnSync(["tar", "-cf", join(ro, "seed.tar"), "-C", join(ro, "seed"), "hello.txt"]);
  expect(tar.exitCode).toBe(0);
  const transport = new StdioClientTransport({
    command: PYRO,
    cwd: process.env.PYRO_TEST_TMP, // outside any git checkout: no project
    args: [
      "mcp",
      "serve",
      "--allow-host-compat",
      "--profile",
      "workspace-full",
      "--allow-host-path",
      ro,
      "--allow-host-path",
      `${rw}:rw`,
    ],
    env: { ...(process.env as Record<string, string>), PYRO_HOME: home, PYRO_BACKEND: "host" },
    stderr: "pipe",
  });
  client = new Client({ name: "pyro-hostile", version: "0.0.0" });
  await client.connect(transport);
  // The default export dir exists, private; plant an escape and a dangling link in it.
  symlinkSync(secret, join(exportDir, "escape"));
  symlinkSync(join(secret, "planted-by-export"), join(exportDir, "dangling"));
});

afterAll(async () => {
  await client?.close();
  rmSync(base, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
});

describe("hostile model over MCP: host paths", () => {
  let id: string;

  test("text_file and patch_file are absent from the schemas and refused by validation", async () => {
    const { tools } = await client.listTools();
    const props = (n: string) => Object.keys(tools.find((t) => t.name === n)?.inputSchema.properties ?? {});
    expect(props("workspace_file_write")).toEqual(expect.arrayContaining(["path", "text"]));
    expect(props("workspace_file_write")).not.toContain("text_file");
    expect(props("workspace_patch_apply")).toContain("patch");
    expect(props("workspace_patch_apply")).not.toContain("patch_file");
    expect(tools.find((t) => t.name === "workspace_file_write")?.inputSchema.additionalProperties).toBe(
      false,
    );

    const c = await call("workspace_create", { seed_path: join(ro, "seed"), allow_host_compat: true });
    expect(c.err).toBe(false);
    id = c.out.workspace_id;
    // Probe: the same call with text works; the CLI (the user) may still use --text-file.
    expect((await call("workspace_file_write", { workspace_id: id, path: "ok.txt", text: "ok" })).err).toBe(
      false,
    );
    const cli = await pyro(
      ["workspace", "file", "write", id, "probe.txt", "--text-file", join(secret, "token.txt")],
      {
        home,
        env: { PYRO_BACKEND: "host" },
      },
    );
    expect(cli.code).toBe(0);
    const probe = await call("workspace_exec", { workspace_id: id, command: FIND_TOKEN });
    expect(probe.out.stdout).toBe("./probe.txt\n"); // the detector used at the end finds a planted token
    await call("workspace_exec", { workspace_id: id, command: "rm probe.txt" });

    const w = await call("workspace_file_write", {
      workspace_id: id,
      path: "stolen.txt",
      text_file: join(secret, "token.txt"),
    });
    expect(w.out.code).toBe("INVALID_INPUT");
    expect(w.out.message).toContain("text_file");
    const w2 = await call("workspace_file_write", {
      workspace_id: id,
      path: "stolen.txt",
      text: "",
      text_file: "/etc/shadow",
    });
    expect(w2.out.code).toBe("INVALID_INPUT");
    const p = await call("workspace_patch_apply", {
      workspace_id: id,
      patch_file: join(secret, "token.txt"),
    });
    expect(p.out.code).toBe("INVALID_INPUT");
    expect((await call("workspace_file_read", { workspace_id: id, path: "stolen.txt" })).out.code).toBe(
      "FILE_NOT_FOUND",
    );
  });

  test("seed_path: granted roots work (dir, tar, relative); outside, .., symlinks out are refused", async () => {
    const seeded = await call("workspace_file_read", { workspace_id: id, path: "hello.txt" });
    expect(seeded.out.content).toBe("hello from the seed\n");
    for (const seed_path of ["seed.tar", join(rw, "more")]) {
      const c = await call("workspace_create", { seed_path, allow_host_compat: true });
      expect(c.err).toBe(false);
      await call("workspace_delete", { workspace_id: c.out.workspace_id });
    }
    const before = (await call("workspace_list", {})).out.count;
    for (const seed_path of [
      secret,
      join(secret, "token.txt"),
      join(ro, "..", "secret"),
      "../secret", // relative: against the first granted root
      join(ro, "escape"),
      join(ro, "escape", "token.txt"),
      join(ro, "escape-file"),
      join(rw, "escape"),
      "/etc",
      join(secret, "does-not-exist"), // no existence oracle outside the roots
    ]) {
      await refused("workspace_create", { seed_path, allow_host_compat: true });
    }
    expect((await call("workspace_list", {})).out.count).toBe(before);
    // Inside a root, an ordinary error names the root by placeholder only.
    const missing = await call("workspace_create", { seed_path: join(ro, "nope"), allow_host_compat: true });
    expect(missing.out.code).toBe("FILE_NOT_FOUND");
    expect(missing.out.message).toContain("<host-root-1>/nope");
    noHostPaths(missing);
  });

  test("sync_push.source: granted roots work; outside, .., symlinks out are refused", async () => {
    const ok = await call("workspace_sync_push", {
      workspace_id: id,
      source: join(rw, "more"),
      dest: "more",
    });
    expect(ok.err).toBe(false);
    expect((await call("workspace_file_read", { workspace_id: id, path: "more/more.txt" })).out.content).toBe(
      "more\n",
    );
    for (const source of [
      secret,
      join(rw, "..", "secret"),
      `${ro}/../secret`,
      join(ro, "escape"),
      join(rw, "escape"),
      join(ro, "escape-file"),
    ]) {
      await refused("workspace_sync_push", { workspace_id: id, source });
    }
  });

  test("export.output: export dir and rw roots work; outside, .., symlinks out, read-only roots are refused", async () => {
    expect(statSync(exportDir).mode & 0o777).toBe(0o700);
    const rel = await call("workspace_export", { workspace_id: id, path: "hello.txt", output: "hello.txt" });
    expect(rel.err).toBe(false);
    expect(readFileSync(join(exportDir, "hello.txt"), "utf8")).toBe("hello from the seed\n");
    const sub = await call("workspace_export", {
      workspace_id: id,
      path: "more",
      output: join(exportDir, "more"),
    });
    expect(sub.err).toBe(false);
    expect(readFileSync(join(exportDir, "more", "more.txt"), "utf8")).toBe("more\n");
    const inRw = await call("workspace_export", {
      workspace_id: id,
      path: "hello.txt",
      output: join(rw, "out.txt"),
    });
    expect(inRw.err).toBe(false);
    expect(readFileSync(join(rw, "out.txt"), "utf8")).toBe("hello from the seed\n");

    const secretBefore = readdirSync(secret).sort();
    for (const output of [
      join(secret, "x.txt"),
      "../x.txt", // relative: against the export dir
      join(exportDir, "..", "x.txt"),
      "escape/x.txt", // a symlink inside the export dir pointing out
      join(exportDir, "escape", "x.txt"),
      join(ro, "x.txt"), // granted, but read-only
      join(ro, "seed", "x.txt"),
      join(rw, "escape", "x.txt"),
      "/tmp/x.txt",
    ]) {
      await refused("workspace_export", { workspace_id: id, path: "hello.txt", output });
    }
    // Never overwrites, never follows a link at the output itself.
    const again = await call("workspace_export", { workspace_id: id, path: "ok.txt", output: "hello.txt" });
    expect(again.out.code).toBe("ALREADY_EXISTS");
    expect(readFileSync(join(exportDir, "hello.txt"), "utf8")).toBe("hello from the seed\n");
    const dangling = await call("workspace_export", { workspace_id: id, path: "ok.txt", output: "dangling" });
    expect(dangling.out.code).toBe("ALREADY_EXISTS");
    noHostPaths(dangling);
    expect(readdirSync(secret).sort()).toEqual(secretBefore);
    expect(existsSync(join(home, "x.txt"))).toBe(false);
    // The disk export's output is confined the same way (checked before the workspace is looked at).
    await refused("workspace_disk_export", { workspace_id: id, output: join(secret, "disk.ext4") });
  });

  test("the planted secret never reached the workspace or any tool output", async () => {
    const grep = await call("workspace_exec", { workspace_id: id, command: FIND_TOKEN });
    expect(grep.err).toBe(false);
    expect(grep.out.stdout).toBe("");
    for (const r of transcript) expect(r).not.toContain(TOKEN);
    await call("workspace_delete", { workspace_id: id });
  });
});

describe("mcp serve flags", () => {
  test("--export-dir is where exports go; a missing --allow-host-path dir or an unknown flag stops startup", async () => {
    const dir = join(base, "exp2");
    const other = freshHome();
    const transport = new StdioClientTransport({
      command: PYRO,
      cwd: process.env.PYRO_TEST_TMP, // outside any git checkout: no project
      args: ["mcp", "serve", "--allow-host-compat", "--export-dir", dir],
      env: { ...(process.env as Record<string, string>), PYRO_HOME: other, PYRO_BACKEND: "host" },
      stderr: "pipe",
    });
    const c = new Client({ name: "pyro-hostile-2", version: "0.0.0" });
    await c.connect(transport);
    const ws = toolPayload(
      await c.callTool({ name: "workspace_create", arguments: { allow_host_compat: true } }),
    );
    await c.callTool({
      name: "workspace_file_write",
      arguments: { workspace_id: ws.workspace_id, path: "a", text: "A" },
    });
    const e = await c.callTool({
      name: "workspace_export",
      arguments: { workspace_id: ws.workspace_id, path: "a", output: "a.txt" },
    });
    expect(e.isError).toBeFalsy();
    expect(readFileSync(join(dir, "a.txt"), "utf8")).toBe("A");
    expect(existsSync(join(other, "exports", "a.txt"))).toBe(false);
    // No root granted: reads are refused, except back from the export dir.
    const push = (source: string) =>
      c.callTool({ name: "workspace_sync_push", arguments: { workspace_id: ws.workspace_id, source } });
    expect((await push(dir)).isError).toBeFalsy();
    expect(toolPayload(await push(ro)).code).toBe("HOST_PATH_NOT_ALLOWED");
    await c.callTool({ name: "workspace_delete", arguments: { workspace_id: ws.workspace_id } });
    await c.close();
    rmSync(other, { recursive: true, force: true });

    const missing = await pyro(["mcp", "serve", "--allow-host-path", join(base, "nope")], { home });
    expect(missing.code).toBe(66);
    expect(missing.stderr).toContain("--allow-host-path");
    const unknown = await pyro(["mcp", "serve", "--allow-host-paths", ro], { home });
    expect(unknown.code).toBe(64);
    const help = await pyro(["mcp", "serve", "--help"], { home });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--allow-host-path");
    expect(help.stdout).toContain("--export-dir");
  });
});

describe("the operation record declares every host path", () => {
  test("each MCP field described as a host path is confined (hostPaths) or CLI/SDK only (mcpOmit)", () => {
    const undeclared = (ops: readonly Operation[]) =>
      ops.flatMap((op) =>
        flagSpecs(op)
          // CLI flag names (--allow-host) are not host paths.
          .filter((s) => /\bhost\b/i.test(s.description.replace(/--[\w-]+/g, "")))
          .filter((s) => !(s.field in (op.hostPaths ?? {})) && !op.mcpOmit?.includes(s.field))
          .map((s) => `${op.name}.${s.field}`),
      );
    // Probe: without the declarations, the check names exactly the host-path fields.
    const bare = OPERATIONS.map((op) => ({ ...op, hostPaths: undefined, mcpOmit: undefined }));
    expect(undeclared(bare.filter((op) => op.profiles.length))).toEqual(
      expect.arrayContaining([
        "workspace_create.seed_path",
        "workspace_file_write.text_file",
        "workspace_export.output",
      ]),
    );
    expect(undeclared(OPERATIONS.filter((op) => op.profiles.length))).toEqual([]);
    // The MCP view drops mcpOmit fields from the schema it validates with.
    for (const op of OPERATIONS)
      for (const f of op.mcpOmit ?? [])
        expect(Object.keys((mcpView(op).input as any).entries)).not.toContain(f);
  });

  test("scrub: known dirs become placeholders, other absolute paths are hidden, /workspace stays", () => {
    const policy = new HostPathPolicy({ roots: [`${rw}:rw`], exportDir, home });
    expect(policy.scrub(`no such file: ${join(exportDir, "a/b")}`)).toBe("no such file: <export-dir>/a/b");
    expect(policy.scrub(`open '${join(rw, "x")}'`)).toBe("open '<host-root-1>/x'");
    expect(policy.scrub(`lock ${join(home, "locks/x")}`)).toBe("lock <pyro-home>/locks/x");
    expect(policy.scrub("copied /etc/shadow to /workspace/a.txt")).toBe("copied <path> to /workspace/a.txt");
    expect(policy.scrub(`${rw}x`)).toBe("<path>"); // a sibling sharing the prefix is not the root
  });
});
