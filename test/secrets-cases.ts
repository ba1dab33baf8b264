/**
 * Secret cases shared by the host-compat test (test/secrets.test.ts) and the real-guest test
 * (test/secrets-guest.test.ts). `leakCheck` drives one workspace through everything a secret
 * touches (create with a literal and a file secret, exec attached and detached, a shell, a
 * service, an error, history, logs, summary, status, diff, export, a snapshot, reset,
 * stop/start) and then
 * looks for every value and its encodings in every file under PYRO_HOME, every CLI output it
 * collected, the export and (guests) the raw disk export: zero hits. Each probe first proves
 * the command really had the value (a sha256 printed by the command against the expected one).
 */
import { expect } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { secretForms } from "../src/manager/redact.ts";
import type { PyroResult } from "./helpers.ts";

export type Run = (args: string[]) => Promise<PyroResult>;

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

/** Every file under `dir`, recursively (binary-safe contents). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** The forms of each value searched for (those of 6 characters or more). */
const formsOf = (values: string[]) => values.flatMap((v) => secretForms(v).filter((f) => f.length >= 6));

/** Where any form of any value occurs: "<where>: <form>" lines (empty: none). */
export function findLeaks(values: string[], haystacks: Array<[string, Buffer]>): string[] {
  const hits: string[] = [];
  for (const form of formsOf(values)) {
    const needle = Buffer.from(form);
    for (const [where, hay] of haystacks) if (hay.indexOf(needle) >= 0) hits.push(`${where}: ${form}`);
  }
  return hits;
}

/**
 * findLeaks for one file of any size (disk images are sparse GiBs): small files in memory,
 * large ones by GNU grep over NUL-separated records (binary-safe; runs of zeros are empty
 * records; values hold no NUL), as fixed strings.
 */
export function findLeaksInFile(values: string[], path: string, shown: string): string[] {
  if (statSync(path).size < 32 * 1024 * 1024) return findLeaks(values, [[shown, readFileSync(path)]]);
  const list = join(mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "leak-")), "patterns");
  writeFileSync(list, `${formsOf(values).join("\n")}\n`);
  const g = Bun.spawnSync(["grep", "-a", "-z", "-F", "-o", "-f", list, path], {
    env: { LC_ALL: "C", PATH: process.env.PATH ?? "/usr/bin:/bin" },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (g.exitCode === 1) return [];
  if (g.exitCode !== 0) throw new Error(`grep failed on ${shown}: ${g.stderr.toString()}`);
  return [`${shown}: ${g.stdout.toString().split("\0").filter(Boolean).slice(0, 3).join(", ")}`];
}

export async function leakCheck(run: Run, home: string, opts: { environment?: string; guest: boolean }) {
  const tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "secrets-"));
  // URL-encoding and JSON escaping change this value; base64 of it has every alphabet's chars
  const literal = `tok-${randomBytes(12).toString("hex")}/+x?=`;
  const fromFile = `file-${randomBytes(12).toString("hex")}`;
  writeFileSync(join(tmp, "token.txt"), `${fromFile}\n`);
  const outputs: Array<[string, Buffer]> = [];
  const call = async (args: string[]) => {
    const r = await run(args);
    outputs.push([`pyro ${args.slice(0, 3).join(" ")}`, Buffer.from(r.stdout + r.stderr)]);
    return r;
  };

  const c = await call([
    "workspace",
    "create",
    ...(opts.environment ? [opts.environment] : ["--allow-host-compat"]),
    "--name",
    "secrets",
    "--secret",
    `TOKEN=${literal}`,
    "--secret-file",
    `FILETOK=${join(tmp, "token.txt")}`,
    "--json",
  ]);
  expect(c.code).toBe(0);
  const ws = c.json.workspace_id as string;
  /** `sh -c script` in the workspace with one secret in the environment (`flags` before it). */
  const shWith = (secret: string, script: string, flags: string[] = []) =>
    call(["workspace", "exec", ws, ...flags, "--secret-env", secret, "--json", "--", "sh", "-c", script]);
  let disk: string | null = null;
  expect(c.json.secrets).toEqual(["TOKEN", "FILETOK"]);
  try {
    // The probes: each command really had the value (file secret: trailing newline dropped).
    const digest = await call([
      "workspace",
      "exec",
      ws,
      "--secret-env",
      "TOKEN",
      "--secret-env",
      "FILETOK=FT",
      "--json",
      "--",
      "sh",
      "-c",
      'printf %s "$TOKEN" | sha256sum; printf %s "$FT" | sha256sum; echo "plain:$TOKEN"; echo "$TOKEN" | base64; printf %s "$FT" | base64',
    ]);
    expect(digest.code).toBe(0);
    const lines = digest.json.stdout.split("\n");
    expect(lines[0]).toStartWith(sha(literal));
    expect(lines[1]).toStartWith(sha(fromFile));
    expect(lines[2]).toBe("plain:[REDACTED:TOKEN]");
    expect(lines[3]).toBe("[REDACTED:TOKEN]");
    expect(lines[4]).toBe("[REDACTED:FILETOK]");

    // Printed in two writes far apart (two chunks): still caught.
    const split = await shWith(
      "TOKEN",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansions
      'h=${TOKEN%?????????????}; printf %s "$h"; sleep 0.5; printf %s "${TOKEN#"$h"}"; echo',
    );
    expect(split.json.stdout).toBe("[REDACTED:TOKEN]\n");
    // The value in the command line itself (URL-encoded): output and history are redacted.
    const url = await call(["workspace", "exec", ws, "--json", "--", "echo", encodeURIComponent(literal)]);
    expect(url.json.stdout).toBe("[REDACTED:TOKEN]\n");
    // ... and in an error message.
    const bad = await call([
      "workspace",
      "exec",
      ws,
      "--cwd",
      `/workspace/${literal}`,
      "--json",
      "--",
      "true",
    ]);
    expect(bad.json.code).toBe("FILE_NOT_FOUND");
    expect(bad.json.message).toContain("[REDACTED:TOKEN]");
    // An undeclared name: a stable code, nothing runs.
    const missing = await call(["workspace", "exec", ws, "--secret-env", "NOPE", "--json", "--", "true"]);
    expect(missing.code).toBe(66);
    expect(missing.json.code).toBe("SECRET_NOT_FOUND");

    // Detached: the spool on the host is redacted before it is written.
    const det = await shWith(
      "TOKEN",
      'printf %s "$TOKEN" | sha256sum; echo "$TOKEN"; printf %s "$TOKEN" | base64',
      ["--detach"],
    );
    expect(det.code).toBe(0);
    const waited = await call([
      "workspace",
      "exec-wait",
      ws,
      det.json.exec_id,
      "--timeout-seconds",
      "120",
      "--json",
    ]);
    expect(waited.json.state).toBe("exited");
    const spooled = await call(["workspace", "exec-read", ws, det.json.exec_id, "--json"]);
    expect(spooled.json.data).toBe(`${sha(literal)}  -\n[REDACTED:TOKEN]\n[REDACTED:TOKEN]\n`);

    // A shell with the secret in its environment.
    const sh = await call(["workspace", "shell", "open", ws, "--secret-env", "TOKEN=TOK", "--json"]);
    expect(sh.code).toBe(0);
    const shellId = sh.json.shell_id as string;
    await call([
      "workspace",
      "shell",
      "write",
      ws,
      shellId,
      "--input",
      'printf %s "$TOK" | sha256sum; echo "[$TOK]"; echo "$TOK" | base64; echo done-$((40+2))',
    ]);
    let shellOut = "";
    for (let i = 0; i < 120 && !shellOut.includes("done-42"); i++) {
      const r = await call([
        "workspace",
        "shell",
        "read",
        ws,
        shellId,
        "--json",
        "--wait-for-idle-ms",
        "300",
      ]);
      shellOut = r.json.output;
    }
    expect(shellOut).toContain(sha(literal));
    expect(shellOut).toContain("[[REDACTED:TOKEN]]");
    const badShell = await call(["workspace", "shell", "open", ws, "--secret-env", "NOPE", "--json"]);
    expect(badShell.json.code).toBe("SECRET_NOT_FOUND");
    await call(["workspace", "shell", "close", ws, shellId]);

    // A service: it gets the value (the sha256 in its log proves it); its logs are redacted
    // before they are written on the host.
    const svc = await call([
      "workspace",
      "service",
      "start",
      ws,
      "api",
      "--secret-env",
      "TOKEN=API_TOKEN",
      "--json",
      "--",
      "sh",
      "-c",
      'printf %s "$API_TOKEN" | sha256sum; echo "auth: $API_TOKEN"; echo "$API_TOKEN" | base64; echo logged; exec sleep 600',
    ]);
    expect(svc.code).toBe(0);
    let svcLog = "";
    // until the last line is in: the log is read while the service is still writing it
    for (let i = 0; i < 120 && !svcLog.includes("logged\n"); i++) {
      const r = await call(["workspace", "service", "logs", ws, "api", "--json"]);
      svcLog = r.json.stdout;
      if (!svcLog.includes("logged\n")) await Bun.sleep(250);
    }
    expect(svcLog).toBe(`${sha(literal)}  -\nauth: [REDACTED:TOKEN]\n[REDACTED:TOKEN]\nlogged\n`);
    const badSvc = await call([
      "workspace",
      "service",
      "start",
      ws,
      "nope",
      "--secret-env",
      "NOPE",
      "--json",
      "--",
      "true",
    ]);
    expect(badSvc.json.code).toBe("SECRET_NOT_FOUND");
    expect((await call(["workspace", "service", "stop", ws, "api"])).code).toBe(0);

    if (opts.guest) {
      // In the guest: a tmpfs outside /workspace, 0700 / 0400.
      const where = await call([
        "workspace",
        "exec",
        ws,
        "--json",
        "--",
        "sh",
        "-c",
        "stat -c '%a %n' /run/pyro/secrets /run/pyro/secrets/TOKEN; stat -f -c %T /run/pyro/secrets",
      ]);
      expect(where.json.stdout).toBe("700 /run/pyro/secrets\n400 /run/pyro/secrets/TOKEN\ntmpfs\n");
    }

    // Everything that reports on the workspace.
    await call(["workspace", "file", "write", ws, "notes.txt", "--text", "no secrets here"]);
    for (const args of [
      ["workspace", "status", ws, "--json"],
      ["workspace", "logs", ws, "--json"],
      ["workspace", "summary", ws, "--json"],
      ["workspace", "list", "--json"],
      ["workspace", "diff", ws, "--json"],
      ["workspace", "exec-list", ws, "--json"],
    ]) {
      const r = await call(args);
      expect(r.code).toBe(0);
    }
    const logs = await call(["workspace", "logs", ws, "--json"]);
    expect(JSON.stringify(logs.json.entries)).toContain("[REDACTED:TOKEN]");
    const exported = join(tmp, "export");
    expect((await call(["workspace", "export", ws, "/workspace", "--output", exported])).code).toBe(0);
    const exportedFiles = filesUnder(exported);
    expect(exportedFiles.map((p) => p.slice(exported.length))).toContain("/notes.txt");
    for (const p of exportedFiles) outputs.push([`the export ${p}`, readFileSync(p)]);
    expect((await call(["workspace", "snapshot", "create", ws, "snap1"])).code).toBe(0);

    // Reset restores them (a fresh machine gets them again).
    expect((await call(["workspace", "reset", ws, "--json"])).code).toBe(0);
    const after = await shWith("TOKEN", 'printf %s "$TOKEN" | sha256sum');
    expect(after.json.stdout).toStartWith(sha(literal));

    // Stopped: the disk export (guests), then start restores them too.
    expect((await call(["workspace", "stop", ws])).code).toBe(0);
    if (opts.guest) {
      disk = join(tmp, "disk.ext4");
      expect((await call(["workspace", "disk", "export", ws, "--output", disk])).code).toBe(0);
    }
    expect((await call(["workspace", "start", ws])).code).toBe(0);
    const started = await shWith("FILETOK", 'printf %s "$FILETOK" | sha256sum');
    expect(started.json.stdout).toStartWith(sha(fromFile));

    // Zero hits anywhere: every file under PYRO_HOME, every output, the exports.
    // probe: the search finds a value where one is
    const probe = Buffer.from(`x${Buffer.from(`${literal}\n`).toString("base64")}`);
    expect(findLeaks([literal], [["probe", probe]])).not.toEqual([]);
    const big = join(tmp, "big-probe");
    writeFileSync(big, Buffer.alloc(40 * 1024 * 1024));
    appendFileSync(big, `\0${encodeURIComponent(literal)}\0`);
    expect(findLeaksInFile([literal], big, "big probe")).not.toEqual([]);
    rmSync(big);
    const files = filesUnder(home);
    expect(files.some((p) => p.endsWith("secrets.sealed"))).toBe(true);
    const hits = findLeaks([literal, fromFile], outputs);
    // one file at a time: the environment's images are large
    for (const p of files) hits.push(...findLeaksInFile([literal, fromFile], p, p.slice(home.length)));
    if (disk) hits.push(...findLeaksInFile([literal, fromFile], disk, "the disk export"));
    expect(hits).toEqual([]);
  } finally {
    await run(["workspace", "delete", ws]);
  }
}

/** Bad input at create: stable codes, no value in any output, no workspace left behind. */
export async function badInput(run: Run, home: string, createArgs: string[]) {
  const tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "secrets-bad-"));
  const value = `val-${randomBytes(8).toString("hex")}`;
  const big = join(tmp, "big");
  writeFileSync(big, "x".repeat(64 * 1024 + 10));
  const cases: Array<[string[], string, number]> = [
    [["--secret", `1BAD=${value}`], "INVALID_INPUT", 64],
    [["--secret", `BAD-NAME=${value}`], "INVALID_INPUT", 64],
    [["--secret", value], "INVALID_INPUT", 64],
    [["--secret", "EMPTY="], "INVALID_INPUT", 64],
    [["--secret", `A=${value}`, "--secret", `A=${value}`], "INVALID_INPUT", 64],
    [["--secret", `A=${"y".repeat(64 * 1024 + 1)}`], "INPUT_TOO_LARGE", 65],
    [["--secret-file", `A=${big}`], "INPUT_TOO_LARGE", 65],
    [["--secret-file", `A=${join(tmp, "missing")}`], "FILE_NOT_FOUND", 66],
    [["--secret-file", `A=${tmp}`], "IS_A_DIRECTORY", 65],
  ];
  for (const [args, code, exit] of cases) {
    const r = await run(["workspace", "create", ...createArgs, ...args, "--json"]);
    expect({ args: args[0], code: r.json?.code, exit: r.code }).toEqual({ args: args[0], code, exit });
    expect(r.stdout + r.stderr).not.toContain(value);
  }
  const list = await run(["workspace", "list", "--json"]);
  expect(list.json.count).toBe(0);
  const dir = join(home, "workspaces");
  expect(existsSync(dir) ? readdirSync(dir).filter((d) => d.startsWith("ws_")) : []).toEqual([]);
}
