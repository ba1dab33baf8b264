/**
 * Host onramps (`pyro host connect | print-config | doctor | repair`): what pyro writes and
 * prints for Claude Code, Codex and OpenCode matches each client's documented format (the
 * fixtures in test/fixtures/host-onramps/), merging keeps everything else in the user's file,
 * `host doctor` finds a planted stale registration and `host repair` fixes it. HOME points at
 * a temp dir for every run. Where a client's own CLI is on PATH, its list/get command is run
 * against what pyro wrote (skipped, saying so, where it is absent; under CI scripts/setup.sh installs
 * them and a missing one fails).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { claudeCode } from "../src/manager/host-onramps/claude-code.ts";
import { codex } from "../src/manager/host-onramps/codex.ts";
import { HOSTS, registration, shellLine } from "../src/manager/host-onramps/index.ts";
import { opencode } from "../src/manager/host-onramps/opencode.ts";
import { ERROR_EXIT_CODES } from "../src/protocol/errors.ts";
import { needs } from "./capabilities.ts";
import { ensureBuilt, PYRO, pyro } from "./helpers.ts";

const FIX = join(import.meta.dir, "fixtures", "host-onramps");
const fixture = (name: string) => readFileSync(join(FIX, name), "utf8");
const SELF = ["/opt/pyro/bin/pyro"];
const REG = registration({ mode: "repro-fix" }, SELF);

const tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "host-onramps-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
/** A fresh HOME with an empty bin dir first on PATH (no chat client CLI unless a test adds one). */
function sandbox(): { home: string; bin: string; env: Record<string, string> } {
  const home = join(tmp, `home${n++}`);
  const bin = join(home, "bin");
  mkdirSync(bin, { recursive: true });
  const env = {
    HOME: home,
    PATH: `${bin}:/usr/bin:/bin`,
    CLAUDE_CONFIG_DIR: "",
    CODEX_HOME: "",
    XDG_CONFIG_HOME: "",
    OPENCODE_CONFIG: "",
  };
  return { home, bin, env };
}
const write = (path: string, text: string) => {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
};

describe("renderers (pure): each client's documented format", () => {
  test("a new registration matches the fixture of each client's format", () => {
    expect(claudeCode.render(null, REG, "x")).toBe(fixture("claude-code.claude.json"));
    expect(codex.render(null, REG, "x")).toBe(fixture("codex.config.toml"));
    expect(opencode.render(null, REG, "x")).toBe(fixture("opencode.json"));
    expect(`${shellLine(claudeCode.addCommand?.(REG) ?? [])}\n`).toBe(fixture("claude-code.connect.txt"));
    expect(`${shellLine(codex.addCommand?.(REG) ?? [])}\n`).toBe(fixture("codex.connect.txt"));
  });

  test("each reader finds the registration its renderer wrote (and none in a file without one)", () => {
    for (const mod of Object.values(HOSTS)) {
      expect(mod.find(mod.render(null, REG, "f"), "f").map((f) => f.registration)).toEqual([REG]);
      expect(mod.find(mod.id === "codex" ? 'model = "o3"\n' : '{"a": 1}', "f")).toEqual([]);
    }
  });

  test("Claude Code: other keys, other servers and project entries survive; local scope is rewritten in place", () => {
    const old = {
      numStartups: 7,
      mcpServers: { other: { type: "stdio", command: "/bin/other", args: [], env: { K: "v" } } },
      projects: {
        "/src/app": {
          allowedTools: ["x"],
          mcpServers: { pyro: { type: "stdio", command: "/gone", args: [], env: { A: "1" } } },
        },
      },
    };
    const text = claudeCode.render(JSON.stringify(old), REG, "f");
    const out = JSON.parse(text);
    expect(out.numStartups).toBe(7);
    expect(out.mcpServers.other).toEqual(old.mcpServers.other);
    expect(out.mcpServers.pyro).toEqual({ type: "stdio", command: SELF[0], args: REG.args, env: {} });
    expect(out.projects).toEqual(old.projects);
    const local = JSON.parse(claudeCode.render(text, REG, "f", "project:/src/app"));
    expect(local.projects["/src/app"].allowedTools).toEqual(["x"]);
    expect(local.projects["/src/app"].mcpServers.pyro).toEqual({
      type: "stdio",
      command: SELF[0],
      args: REG.args,
      env: { A: "1" },
    });
    expect(claudeCode.find(text, "f").map((f) => f.scope)).toEqual(["user", "project:/src/app"]);
  });

  test("Codex: comments, other keys and tables survive; pyro's table and its sub-tables are replaced in place", () => {
    const old = [
      "# my codex config",
      'model = "o3"',
      "",
      "[mcp_servers.pyro]",
      'command = "/gone/pyro"',
      'args = ["mcp", "serve", "--profile", "workspace-full"]',
      "startup_timeout_sec = 20",
      "",
      "[mcp_servers.pyro.env]",
      'PYRO_HOME = "/data/pyro"',
      "",
      "# the docs server",
      "[mcp_servers.docs]",
      'command = "npx"',
      'args = ["-y", "docs-mcp"]',
      "",
    ].join("\n");
    const text = codex.render(old, REG, "f");
    expect(text.startsWith('# my codex config\nmodel = "o3"\n\n[mcp_servers.pyro]\n')).toBe(true);
    expect(text).toContain("# the docs server\n[mcp_servers.docs]");
    const doc = Bun.TOML.parse(text) as any;
    expect(doc.model).toBe("o3");
    expect(doc.mcp_servers.docs).toEqual({ command: "npx", args: ["-y", "docs-mcp"] });
    expect(doc.mcp_servers.pyro).toEqual({
      command: SELF[0],
      args: REG.args,
      startup_timeout_sec: 20,
      env: { PYRO_HOME: "/data/pyro" },
    });
    // appended after the user's last table when absent
    const appended = codex.render('model = "o3"\n\n[mcp_servers.docs]\ncommand = "npx"\n', REG, "f");
    expect(appended).toBe(
      `model = "o3"\n\n[mcp_servers.docs]\ncommand = "npx"\n\n${fixture("codex.config.toml")}`,
    );
  });

  test("Codex: a pyro entry in a form pyro cannot rewrite, or invalid TOML, is refused naming the file", () => {
    for (const bad of ['[mcp_servers]\npyro = { command = "/x" }\n', "model = \n"]) {
      let err: any;
      try {
        codex.render(bad, REG, "/h/.codex/config.toml");
      } catch (e) {
        err = e;
      }
      expect(err?.code).toBe("INVALID_INPUT");
      expect(err?.message).toContain("/h/.codex/config.toml");
    }
  });

  test("OpenCode: other keys and servers survive; a file with comments is refused (the same file without them merges)", () => {
    const plain =
      '{\n  "theme": "dark",\n  "mcp": {\n    "docs": {"type": "remote", "url": "https://x"}\n  }\n}\n';
    const out = JSON.parse(opencode.render(plain, REG, "f"));
    expect(out.theme).toBe("dark");
    expect(out.$schema).toBeUndefined(); // an existing file is not given keys it did not have
    expect(out.mcp.docs).toEqual({ type: "remote", url: "https://x" });
    expect(out.mcp.pyro).toEqual({ type: "local", command: [SELF[0], ...REG.args], enabled: true });
    const commented = plain.replace('"theme"', '// mine\n  "theme"');
    expect(opencode.find(commented, "f")).toEqual([]); // JSONC is read
    let err: any;
    try {
      opencode.render(commented, REG, "/h/opencode.jsonc");
    } catch (e) {
      err = e;
    }
    expect(err?.code).toBe("INVALID_INPUT");
    expect(err?.message).toContain("comments");
    expect(err?.hint).toContain('"local"');
  });
});

describe("pyro host (compiled CLI)", () => {
  beforeAll(async () => {
    await ensureBuilt();
  });
  /** The fixture with /opt/pyro/bin/pyro replaced by the path of the pyro under test. */
  const expected = (name: string) => fixture(name).replaceAll(SELF[0] as string, PYRO);

  test("connect prints the client's registration command (fixture) when its CLI is absent or --print is given", async () => {
    const { env } = sandbox();
    for (const host of ["claude-code", "codex"]) {
      const r = await pyro(["host", "connect", host, "--mode", "repro-fix", "--json"], { env });
      expect(r.code).toBe(0);
      expect(r.json.ran).toBe(false);
      expect(r.json.cli).toBeNull();
      expect(`${r.json.command_line}\n`).toBe(expected(`${host}.connect.txt`));
      const human = await pyro(["host", "connect", host, "--mode", "repro-fix"], { env });
      expect(human.stdout).toContain(r.json.command_line);
      expect(human.stdout).toContain("not on PATH");
    }
    const bad = await pyro(["host", "connect", "opencode", "--json"], { env });
    expect(bad.code).toBe(ERROR_EXIT_CODES.INVALID_INPUT);
    const mode = await pyro(["host", "connect", "codex", "--mode", "nope", "--json"], { env });
    expect(mode.code).toBe(ERROR_EXIT_CODES.INVALID_INPUT);
  });

  test("connect runs the client's own command when its CLI is on PATH (Claude Code: remove, then add)", async () => {
    const { home, bin, env } = sandbox();
    const log = join(home, "argv.log");
    for (const cli of ["claude", "codex"]) {
      write(join(bin, cli), `#!/bin/sh\necho "${cli} $*" >> ${log}\necho added\n`);
      chmodSync(join(bin, cli), 0o755);
    }
    const codexRun = await pyro(["host", "connect", "codex", "--profile", "workspace-full", "--json"], {
      env,
    });
    expect(codexRun.code).toBe(0);
    expect(codexRun.json).toMatchObject({ ran: true, cli: join(bin, "codex"), output: "added" });
    expect(readFileSync(log, "utf8")).toBe(
      `codex mcp add pyro -- ${PYRO} mcp serve --profile workspace-full\n`,
    );
    rmSync(log);
    // no registration yet: just `add`
    await pyro(["host", "connect", "claude-code", "--json"], { env });
    expect(readFileSync(log, "utf8")).toBe(`claude mcp add --scope user pyro -- ${PYRO} mcp serve\n`);
    rmSync(log);
    // with one at user scope, claude's add would refuse the name: remove it first
    write(join(home, ".claude.json"), expected("claude-code.claude.json"));
    const again = await pyro(["host", "connect", "claude-code", "--json"], { env });
    expect(again.code).toBe(0);
    expect(readFileSync(log, "utf8")).toBe(
      `claude mcp remove --scope user pyro\nclaude mcp add --scope user pyro -- ${PYRO} mcp serve\n`,
    );
    // --print never runs it
    rmSync(log);
    const printed = await pyro(["host", "connect", "codex", "--print", "--json"], { env });
    expect(printed.json.ran).toBe(false);
    expect(() => readFileSync(log)).toThrow();
    // a failing client command is an error carrying its output
    write(join(bin, "codex"), "#!/bin/sh\necho 'config is broken' >&2\nexit 3\n");
    const failed = await pyro(["host", "connect", "codex", "--json"], { env });
    expect(failed.code).toBe(ERROR_EXIT_CODES.IO_ERROR);
    expect(failed.json.code).toBe("IO_ERROR");
    expect(failed.json.message).toContain("config is broken");
  });

  test("print-config prints each client's format (fixture), and --output merges into a file keeping the rest", async () => {
    const { home, env } = sandbox();
    const printed = await pyro(["host", "print-config", "opencode", "--mode", "repro-fix"], { env });
    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(expected("opencode.json"));
    const toml = await pyro(["host", "print-config", "codex", "--mode", "repro-fix", "--json"], { env });
    expect(toml.json.text).toBe(expected("codex.config.toml"));

    const fresh = join(home, "new", "opencode.json");
    const wrote = await pyro(
      ["host", "print-config", "opencode", "--mode", "repro-fix", "--output", fresh, "--json"],
      {
        env,
      },
    );
    expect(wrote.json).toMatchObject({ output: fresh, merged: false });
    expect(readFileSync(fresh, "utf8")).toBe(expected("opencode.json"));

    const existing = join(home, "project", "opencode.json");
    const before = {
      $schema: "https://opencode.ai/config.json",
      model: "anthropic/claude-sonnet-4-5",
      mcp: { docs: { type: "remote", url: "https://docs.example/mcp", enabled: true } },
    };
    write(existing, JSON.stringify(before, null, 2));
    const merged = await pyro(["host", "print-config", "opencode", "--output", existing], { env });
    expect(merged.code).toBe(0);
    expect(merged.stdout).toContain(`merged pyro into ${existing}`);
    const after = JSON.parse(readFileSync(existing, "utf8"));
    expect(after.model).toBe(before.model);
    expect(after.mcp.docs).toEqual(before.mcp.docs);
    expect(after.mcp.pyro).toEqual({ type: "local", command: [PYRO, "mcp", "serve"], enabled: true });

    // a symlinked config file is written where the link points; the link survives
    const target = join(home, "dotfiles", "opencode.json");
    write(target, "{}");
    const link = join(home, "link.json");
    symlinkSync(target, link);
    await pyro(["host", "print-config", "opencode", "--output", link], { env });
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(JSON.parse(readFileSync(target, "utf8")).mcp.pyro.command[0]).toBe(PYRO);
  });

  test("doctor reports planted stale registrations (missing executable, not pyro) and repair fixes them, keeping flags and other keys", async () => {
    const { home, bin, env } = sandbox();
    const claudeFile = join(home, ".claude.json");
    const codexFile = join(home, ".codex", "config.toml");
    const opencodeFile = join(home, ".config", "opencode", "opencode.json");
    const notPyro = join(bin, "not-pyro");
    write(notPyro, "#!/bin/sh\necho 'something else 1.0'\n");
    chmodSync(notPyro, 0o755);

    // the probe works: registrations naming this pyro are ok and doctor exits 0
    write(claudeFile, expected("claude-code.claude.json"));
    write(codexFile, expected("codex.config.toml"));
    write(opencodeFile, expected("opencode.json"));
    const good = await pyro(["host", "doctor", "--json"], { env });
    expect(good.code).toBe(0);
    expect(good.json.ok).toBe(true);
    expect(good.json.pyro).toEqual([PYRO]);
    expect(good.json.hosts.map((h: any) => [h.host, h.status])).toEqual([
      ["claude-code", "ok"],
      ["codex", "ok"],
      ["opencode", "ok"],
    ]);

    // plant stale ones: a missing executable (Claude Code, both scopes; Codex), not pyro (OpenCode)
    const gone = "/nonexistent/old/pyro";
    write(
      claudeFile,
      JSON.stringify({
        numStartups: 3,
        mcpServers: {
          pyro: { type: "stdio", command: gone, args: ["mcp", "serve", "--mode", "inspect"], env: {} },
          other: { type: "stdio", command: "/bin/other", args: [], env: {} },
        },
        projects: {
          "/src/app": {
            mcpServers: { pyro: { type: "stdio", command: gone, args: ["mcp", "serve"], env: {} } },
          },
        },
      }),
    );
    write(
      codexFile,
      `# keep me\nmodel = "o3"\n\n[mcp_servers.pyro]\ncommand = "${gone}"\nargs = ["mcp", "serve", "--profile", "workspace-full"]\n\n[mcp_servers.docs]\ncommand = "npx"\n`,
    );
    write(
      opencodeFile,
      JSON.stringify({
        theme: "dark",
        mcp: { pyro: { type: "local", command: [notPyro, "mcp", "serve"], enabled: true } },
      }),
    );
    const stale = await pyro(["host", "doctor", "--json"], { env });
    expect(stale.json.ok).toBe(false);
    expect(stale.code).toBe(ERROR_EXIT_CODES.FILE_NOT_FOUND);
    const byHost = Object.fromEntries(stale.json.hosts.map((h: any) => [h.host, h]));
    expect(byHost["claude-code"].status).toBe("stale");
    expect(byHost["claude-code"].registrations.map((r: any) => [r.scope, r.status])).toEqual([
      ["user", "stale"],
      ["project:/src/app", "stale"],
    ]);
    expect(byHost["claude-code"].detail).toContain(`${gone} does not exist`);
    expect(byHost["claude-code"].hint).toBe("pyro host repair claude-code");
    expect(byHost.codex.status).toBe("stale");
    expect(byHost.opencode.status).toBe("stale");
    expect(byHost.opencode.detail).toContain("is not pyro");
    const human = await pyro(["host", "doctor"], { env });
    expect(human.stdout).toContain("some registrations are stale");

    for (const host of ["claude-code", "codex", "opencode"]) {
      const r = await pyro(["host", "repair", host, "--json"], { env });
      expect(r.code).toBe(0);
      expect(r.json.repaired.length).toBeGreaterThan(0);
      for (const x of r.json.repaired) expect(x.after.command).toBe(PYRO);
    }
    const fixed = await pyro(["host", "doctor", "--json"], { env });
    expect(fixed.code).toBe(0);
    expect(fixed.json.hosts.map((h: any) => h.status)).toEqual(["ok", "ok", "ok"]);

    // flags and everything else kept
    const claude = JSON.parse(readFileSync(claudeFile, "utf8"));
    expect(claude.numStartups).toBe(3);
    expect(claude.mcpServers.other.command).toBe("/bin/other");
    expect(claude.mcpServers.pyro.args).toEqual(["mcp", "serve", "--mode", "inspect"]);
    expect(claude.projects["/src/app"].mcpServers.pyro.command).toBe(PYRO);
    const codexText = readFileSync(codexFile, "utf8");
    expect(codexText.startsWith("# keep me\n")).toBe(true);
    expect((Bun.TOML.parse(codexText) as any).mcp_servers).toEqual({
      pyro: { command: PYRO, args: ["mcp", "serve", "--profile", "workspace-full"] },
      docs: { command: "npx" },
    });
    expect(JSON.parse(readFileSync(opencodeFile, "utf8")).theme).toBe("dark");

    // repairing what is fine changes nothing
    const noop = await pyro(["host", "repair", "codex", "--json"], { env });
    expect(noop.json).toEqual({ host: "codex", repaired: [], unchanged: 1 });
  });

  test("doctor: another pyro that answers --version is a warning, not a failure; repair points it at this pyro", async () => {
    const { home, bin, env } = sandbox();
    const other = join(bin, "pyro-old");
    write(other, '#!/bin/sh\necho "pyro 0.0.1"\n');
    chmodSync(other, 0o755);
    write(
      join(home, ".codex", "config.toml"),
      `[mcp_servers.pyro]\ncommand = "${other}"\nargs = ["mcp", "serve"]\n`,
    );
    const r = await pyro(["host", "doctor", "--json"], { env });
    expect(r.code).toBe(0);
    expect(r.json.ok).toBe(true);
    const codexReport = r.json.hosts.find((h: any) => h.host === "codex");
    expect(codexReport.status).toBe("other_pyro");
    expect(codexReport.detail).toContain("another pyro (0.0.1)");
    expect(r.json.hosts.find((h: any) => h.host === "opencode").status).toBe("not_installed");
    const fixed = await pyro(["host", "repair", "codex", "--json"], { env });
    expect(fixed.json.repaired[0].after).toEqual({ command: PYRO, args: ["mcp", "serve"] });
  });

  test("repair without a registration says so and how to connect", async () => {
    const { env } = sandbox();
    const r = await pyro(["host", "repair", "codex", "--json"], { env });
    expect(r.code).toBe(ERROR_EXIT_CODES.INVALID_INPUT);
    expect(r.json.hint).toBe("pyro host connect codex");
  });
});

/**
 * The clients' own tools against what pyro wrote. They are not installed by scripts/setup.sh
 * (hundreds of MB each); a developer can put them on PATH (npm i @anthropic-ai/claude-code
 * @openai/codex opencode-ai) to run these.
 */
describe("the clients' own CLIs read what pyro wrote", () => {
  const clients = [
    {
      host: "claude-code",
      cli: "claude",
      // `claude mcp get` starts the server and reports the connection
      check: ["claude", "mcp", "get", "pyro"],
      expect: /Connected/,
    },
    {
      host: "codex",
      cli: "codex",
      check: ["codex", "mcp", "get", "pyro", "--json"],
      expect: /"command": ".*pyro"/,
    },
    { host: "opencode", cli: "opencode", check: ["opencode", "mcp", "list"], expect: /pyro.*connected/ },
  ] as const;
  for (const c of clients) {
    // Under CI scripts/setup.sh installs the clients: a missing one fails (test/capabilities.ts).
    needs(c.cli).test(
      `${c.cli} lists pyro as registered by pyro host`,
      async () => {
        const found = Bun.which(c.cli) as string;
        await ensureBuilt();
        const { home, env } = sandbox();
        const path = `${env.PATH}:${join(found, "..")}`;
        const clientEnv = { ...env, PATH: path };
        if (c.host === "opencode") {
          const file = join(home, ".config", "opencode", "opencode.json");
          expect(
            (await pyro(["host", "print-config", "opencode", "--output", file], { env: clientEnv })).code,
          ).toBe(0);
        } else {
          const r = await pyro(["host", "connect", c.host, "--json"], { env: clientEnv });
          expect(r.json?.ran).toBe(true);
        }
        const p = Bun.spawn(c.check as unknown as string[], {
          env: { ...process.env, ...clientEnv, NO_COLOR: "1" },
          cwd: home,
          stdout: "pipe",
          stderr: "pipe",
          stdin: "ignore",
        });
        const out = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
        await p.exited;
        expect(out.replace(/\x1b\[[0-9;]*m/g, "")).toMatch(c.expect);
      },
      120_000,
    );
  }
});
