/**
 * Project-aware startup: `pyro mcp serve` in a git checkout (or --project-path, --repo-url)
 * seeds workspace_create without seed_path with the project's git-tracked files, as the
 * official MCP client sees it. Host compat for the listing checks, plus one real guest.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { displayUrl } from "../src/manager/project.ts";
import { guest, guestHome } from "./guest-env.ts";
import { ensureBuilt, freshHome, PYRO, pyro, REPO, toolPayload } from "./helpers.ts";

const tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "project-"));
const homes: string[] = [];

function git(cwd: string, ...args: string[]): string {
  const p = Bun.spawnSync(["git", "-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd });
  if (p.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

/** A new repository with `files` committed. */
function makeRepo(name: string, files: Record<string, string>): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  git(dir, "init", "--quiet", "--initial-branch=main");
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  git(dir, "add", "-A");
  git(dir, "commit", "--quiet", "-m", "init");
  return realpathSync(dir);
}

async function serve(args: string[], opts: { cwd?: string; home?: string; guest?: boolean } = {}) {
  const home = opts.home ?? freshHome();
  if (!opts.home) homes.push(home);
  const env: Record<string, string> = { ...(process.env as Record<string, string>), PYRO_HOME: home };
  if (!opts.guest) env.PYRO_BACKEND = "host";
  const transport = new StdioClientTransport({
    command: PYRO,
    cwd: opts.cwd ?? tmp,
    args: ["mcp", "serve", ...(opts.guest ? [] : ["--allow-host-compat"]), ...args],
    env,
    stderr: "pipe",
  });
  const client = new Client({ name: "pyro-project-test", version: "0.0.0" });
  await client.connect(transport);
  const call = async (name: string, args: Record<string, unknown>) => {
    const r = await client.callTool({ name, arguments: { ...args } });
    return { error: r.isError === true, body: toolPayload(r) };
  };
  return { client, call, home };
}

const HOST = { allow_host_compat: true };

/** Every non-directory path under /workspace, relative, sorted (what the model can list). */
async function listed(call: Awaited<ReturnType<typeof serve>>["call"], id: string): Promise<string[]> {
  const r = await call("workspace_file_list", { workspace_id: id, recursive: true });
  expect(r.body.truncated).toBe(false);
  return r.body.entries
    .filter((e: any) => e.artifact_type !== "directory")
    .map((e: any) => String(e.path).replace(/^\/workspace\//, ""))
    .sort();
}

beforeAll(async () => {
  await ensureBuilt();
}, 300_000);

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

describe("project-aware startup", () => {
  test("in a checkout of this repository: workspace_create without seed_path holds exactly `git ls-files`, at HEAD", async () => {
    const clone = join(tmp, "pyro-clone");
    git(tmp, "clone", "--quiet", "--no-hardlinks", REPO, clone);
    const root = realpathSync(clone);
    const head = git(root, "rev-parse", "HEAD").trim();
    const tracked = git(root, "ls-files", "-z").split("\0").filter(Boolean).sort();
    expect(tracked).toContain("src/manager/project.ts");
    // Started in a subdirectory: the project is the whole checkout.
    const { client, call } = await serve([], { cwd: join(root, "src") });
    try {
      expect(client.getInstructions()).toContain(`Project: the git checkout at ${root}`);
      const ws = await call("workspace_create", HOST);
      expect(ws.error).toBe(false);
      expect(ws.body.workspace_seed).toEqual({ origin_kind: "project", origin_ref: `${root}@${head}` });
      expect(await listed(call, ws.body.workspace_id)).toEqual(tracked);
      // The seed is the baseline: nothing to diff.
      expect((await call("workspace_diff", { workspace_id: ws.body.workspace_id })).body.patch).toBe("");
      // The project root is the first granted root: a relative seed_path reads from it.
      const docs = await call("workspace_create", { ...HOST, seed_path: "docs" });
      expect(docs.body.workspace_seed).toEqual({ origin_kind: "directory", origin_ref: join(root, "docs") });
      for (const w of [ws, docs]) await call("workspace_delete", { workspace_id: w.body.workspace_id });
    } finally {
      await client.close();
    }
  });

  test("working-tree content of tracked files only; what cannot be seeded is reported, not fatal", async () => {
    const repo = makeRepo("messy", {
      "a.txt": "committed\n",
      "sub/b.txt": "b\n",
      "gone.txt": "deleted in the working tree\n",
      pipe: "a file in the index, a fifo in the working tree\n",
      ".gitignore": "ignored.log\n",
    });
    writeFileSync(join(repo, "a.txt"), "edited, not committed\n");
    writeFileSync(join(repo, "untracked.txt"), "never seeded\n");
    writeFileSync(join(repo, "ignored.log"), "never seeded\n");
    unlinkSync(join(repo, "gone.txt"));
    unlinkSync(join(repo, "pipe"));
    expect(Bun.spawnSync(["mkfifo", join(repo, "pipe")]).exitCode).toBe(0);
    const { client, call } = await serve(["--project-path", join(repo, "sub")]);
    try {
      const ws = await call("workspace_create", HOST);
      expect(ws.error).toBe(false);
      expect(ws.body.workspace_seed.origin_kind).toBe("project");
      expect(ws.body.workspace_seed.skipped).toEqual([
        { path: "gone.txt", reason: "missing" },
        { path: "pipe", reason: "not a regular file" },
      ]);
      expect(ws.body.workspace_seed.skipped_count).toBe(2);
      expect(await listed(call, ws.body.workspace_id)).toEqual([".gitignore", "a.txt", "sub/b.txt"]);
      const a = await call("workspace_file_read", { workspace_id: ws.body.workspace_id, path: "a.txt" });
      expect(a.body.content).toBe("edited, not committed\n");
      // The status keeps the report (it is part of the record).
      const st = await call("workspace_status", { workspace_id: ws.body.workspace_id });
      expect(st.body.workspace_seed.skipped_count).toBe(2);
      await call("workspace_delete", { workspace_id: ws.body.workspace_id });
    } finally {
      await client.close();
    }
  });

  test("--repo-url URL --repo-ref REF: cloned into PYRO_HOME/projects, seeded at that ref, refreshed on the next start", async () => {
    const repo = makeRepo("remote", { README: "main\n" });
    git(repo, "checkout", "--quiet", "-b", "feature");
    writeFileSync(join(repo, "feature.txt"), "on the branch\n");
    git(repo, "add", "feature.txt");
    git(repo, "commit", "--quiet", "-m", "feature");
    const featureHead = git(repo, "rev-parse", "HEAD").trim();
    git(repo, "checkout", "--quiet", "main");
    const url = `file://${repo}`;
    const { client, call, home } = await serve(["--repo-url", url, "--repo-ref", "feature"]);
    try {
      expect(client.getInstructions()).toContain(`Project: ${url}, cloned for this server`);
      const ws = await call("workspace_create", HOST);
      expect(ws.body.workspace_seed).toEqual({ origin_kind: "project", origin_ref: `${url}@${featureHead}` });
      expect(await listed(call, ws.body.workspace_id)).toEqual(["README", "feature.txt"]);
      await call("workspace_delete", { workspace_id: ws.body.workspace_id });
    } finally {
      await client.close();
    }
    // A second start reuses the clone, fetches, and checks out the remote's HEAD (main).
    const again = await serve(["--repo-url", url], { home });
    try {
      const ws = await again.call("workspace_create", HOST);
      expect(await listed(again.call, ws.body.workspace_id)).toEqual(["README"]);
      await again.call("workspace_delete", { workspace_id: ws.body.workspace_id });
    } finally {
      await again.client.close();
    }
    const unknown = await pyro(["mcp", "serve", "--repo-url", url, "--repo-ref", "nope"], { home });
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain("--repo-ref nope");
  });

  test("a repository URL is shown without its credentials", () => {
    expect(displayUrl("https://user:hunter2@example.com/a/b.git")).toBe("https://example.com/a/b.git");
    expect(displayUrl("https://example.com/a/b.git")).toBe("https://example.com/a/b.git");
  });

  test("outside any checkout, or with --no-project-source: no project, and the instructions say so", async () => {
    const repo = makeRepo("plain", { "x.txt": "x\n" });
    for (const [args, cwd] of [
      [[], tmp],
      [["--no-project-source"], repo],
    ] as const) {
      const { client, call } = await serve([...args], { cwd });
      try {
        expect(client.getInstructions()).toContain("No project:");
        const ws = await call("workspace_create", HOST);
        expect(ws.body.workspace_seed).toEqual({ origin_kind: "empty", origin_ref: null });
        await call("workspace_delete", { workspace_id: ws.body.workspace_id });
      } finally {
        await client.close();
      }
    }
  });

  test("the model cannot name a project; seed_path still wins over the project", async () => {
    const repo = makeRepo("model", { "x.txt": "x\n", "seed/y.txt": "y\n" });
    const { client, call } = await serve([], { cwd: repo });
    try {
      const named = await call("workspace_create", { ...HOST, project: { root: "/etc", origin: "/etc" } });
      expect(named.error).toBe(true);
      expect(named.body.code).toBe("INVALID_INPUT");
      const seeded = await call("workspace_create", { ...HOST, seed_path: "seed" });
      expect(seeded.body.workspace_seed.origin_kind).toBe("directory");
      expect(await listed(call, seeded.body.workspace_id)).toEqual(["y.txt"]);
      await call("workspace_delete", { workspace_id: seeded.body.workspace_id });
    } finally {
      await client.close();
    }
  });

  test("bad project flags are usage errors (exit 64)", async () => {
    const repo = makeRepo("flags", { "x.txt": "x\n" });
    const cases: Array<[string[], string]> = [
      [["--project-path", tmp], "not inside a git checkout"],
      [["--project-path", repo, "--no-project-source"], "at most one of"],
      [["--repo-ref", "main"], "--repo-ref needs --repo-url"],
    ];
    for (const [args, says] of cases) {
      const r = await pyro(["mcp", "serve", ...args]);
      expect({ args, code: r.code, says: r.stderr.includes(says) }).toEqual({ args, code: 64, says: true });
    }
  });
});

guest.describe("real guest: project seed", () => {
  let home = "";
  beforeAll(async () => {
    home = await guestHome();
  }, 1_800_000);

  test("real guest: a project's tracked files seed a real guest and read back", async () => {
    const repo = makeRepo("guest", { "hello.txt": "hello from the project\n", "src/main.sh": "echo hi\n" });
    writeFileSync(join(repo, "untracked.txt"), "stays on the host\n");
    const head = git(repo, "rev-parse", "HEAD").trim();
    const { client, call } = await serve([], { cwd: repo, home, guest: true });
    try {
      const ws = await call("workspace_create", { name: "project-seed" });
      expect(ws.error).toBe(false);
      expect(ws.body.execution_mode).toBe("guest");
      expect(ws.body.workspace_seed).toEqual({ origin_kind: "project", origin_ref: `${repo}@${head}` });
      try {
        const read = await call("workspace_file_read", { workspace_id: "project-seed", path: "hello.txt" });
        expect(read.body.content).toBe("hello from the project\n");
        const ran = await call("workspace_exec", {
          workspace_id: "project-seed",
          command: "sh src/main.sh; test -e untracked.txt || echo untracked stayed home",
        });
        expect(ran.body.stdout).toBe("hi\nuntracked stayed home\n");
      } finally {
        await call("workspace_delete", { workspace_id: "project-seed" });
      }
    } finally {
      await client.close();
    }
  }, 300_000);
});
