/**
 * Host onramps: register pyro's MCP server with a chat client (Claude Code, Codex, OpenCode),
 * check those registrations, and repair stale ones. The client modules beside this file know
 * each client's documented config locations and formats; this file does the work.
 *
 * Invariants:
 * - The registration always names this pyro by absolute path (`selfPathCommand()`), followed by
 *   `mcp serve` and the flags given (passed through as given).
 * - Config files are only ever rewritten through a module's `render` (pyro's one entry
 *   changes, every other key stays) and written atomically, keeping the file's mode; a
 *   symlinked config file is written where the link points, so the link survives.
 * - Client CLIs and registered executables are spawned with argv arrays, with a timeout.
 */
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { writeFileAtomic } from "../../base/atomic.ts";
import type { Env } from "../../base/paths.ts";
import { PyroError } from "../../protocol/errors.ts";
import type { Ctx } from "../context.ts";
import { selfPathCommand } from "../self.ts";
import { claudeCode } from "./claude-code.ts";
import { codex } from "./codex.ts";
import { opencode } from "./opencode.ts";
import {
  type Found,
  HOST_IDS,
  type HostId,
  type HostModule,
  type Registration,
  SERVER_NAME,
} from "./types.ts";

export { HOST_IDS, type HostId, type Registration, SERVER_NAME };

export const HOSTS: Record<HostId, HostModule> = { "claude-code": claudeCode, codex, opencode };

export interface ServeFlags {
  mode?: string;
  profile?: string;
}

/** `pyro mcp serve` flags in the order they are registered. */
export function serveArgs(flags: ServeFlags): string[] {
  const args = ["mcp", "serve"];
  if (flags.profile) args.push("--profile", flags.profile);
  if (flags.mode) args.push("--mode", flags.mode);
  return args;
}

/** How the client starts this pyro's MCP server. */
export function registration(flags: ServeFlags, self: string[] = selfPathCommand()): Registration {
  const [command, ...pre] = self as [string, ...string[]];
  return { command, args: [...pre, ...serveArgs(flags)] };
}

/** A command line a person can paste into a POSIX shell. */
export function shellLine(argv: string[]): string {
  return argv.map((a) => (/^[\w./:=@%+,-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(" ");
}

function findCli(name: string, env: Env): string | null {
  return Bun.which(name, { PATH: env.PATH ?? "" });
}

/** Run a command (argv), capturing stdout+stderr; killed after `timeoutMs`. */
async function run(argv: string[], env: Env, timeoutMs: number): Promise<{ code: number; output: string }> {
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(argv, {
      env: env as Record<string, string>,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
  } catch (err) {
    return { code: 127, output: (err as Error).message };
  }
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout as ReadableStream).text(),
    new Response(proc.stderr as ReadableStream).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, output: `${out}${err}`.trim() };
}

/** pyro's registrations in every config file of `mod` that exists (a file that cannot be read throws). */
function findAll(mod: HostModule, env: Env): { files: string[]; found: Found[] } {
  const files = mod.configFiles(env).filter((f) => existsSync(f));
  return { files, found: files.flatMap((f) => mod.find(readFileSync(f, "utf8"), f)) };
}

/** Write a client's config file atomically, where a symlink points, keeping the file's mode. */
function writeConfig(path: string, text: string): void {
  const real = existsSync(path) ? realpathSync(path) : path;
  const mode = existsSync(real) ? statSync(real).mode & 0o777 : 0o600;
  writeFileAtomic(real, text, mode);
}

// ---- connect -------------------------------------------------------------------------

export interface ConnectResult {
  host: HostId;
  command: string[];
  command_line: string;
  ran: boolean;
  cli: string | null;
  output: string | null;
  config_file: string;
  registration: Registration;
}

/** Run the client's own registration command when its CLI is on PATH (unless `print`), else print it. */
export async function connectHost(
  ctx: Ctx,
  host: HostId,
  flags: ServeFlags & { print?: boolean },
  self?: string[],
): Promise<ConnectResult> {
  const mod = HOSTS[host];
  if (!mod.addCommand)
    throw new PyroError("INVALID_INPUT", `pyro host connect does not support ${host}`, {
      hint: `pyro host print-config ${host} --output FILE`,
    });
  const reg = registration(flags, self);
  const command = mod.addCommand(reg);
  const cli = findCli(mod.cli, ctx.env);
  const result: ConnectResult = {
    host,
    command,
    command_line: shellLine(command),
    ran: false,
    cli,
    output: null,
    config_file: mod.userConfigFile(ctx.env),
    registration: reg,
  };
  if (flags.print || cli === null) return result;
  const outputs: string[] = [];
  // Claude Code's `mcp add` refuses a name that exists: remove pyro's user-scope entry first
  // (Codex's `mcp add` replaces it by itself).
  if (mod.removeCommand && findAll(mod, ctx.env).found.some((f) => f.scope === "user")) {
    const rm = await run([cli, ...mod.removeCommand().slice(1)], ctx.env, 60_000);
    outputs.push(rm.output);
  }
  const add = await run([cli, ...command.slice(1)], ctx.env, 60_000);
  outputs.push(add.output);
  const output = outputs.filter(Boolean).join("\n");
  if (add.code !== 0)
    throw new PyroError("IO_ERROR", `${shellLine(command)} failed (exit ${add.code}): ${output}`, {
      details: { command, exit_code: add.code, output },
      hint: `run it yourself, or see what it would do with: pyro host connect ${host} --print`,
    });
  return { ...result, ran: true, output };
}

// ---- print-config --------------------------------------------------------------------

export interface PrintConfigResult {
  host: HostId;
  text: string;
  output: string | null;
  merged: boolean;
  registration: Registration;
}

/** The client's config with pyro's entry: printed, or merged into `output` (created if missing). */
export function printHostConfig(
  host: HostId,
  flags: ServeFlags & { output?: string },
  self?: string[],
): PrintConfigResult {
  const mod = HOSTS[host];
  const reg = registration(flags, self);
  if (flags.output === undefined)
    return {
      host,
      text: mod.render(null, reg, "(new file)"),
      output: null,
      merged: false,
      registration: reg,
    };
  const path = resolve(flags.output);
  const old = existsSync(path) ? readFileSync(path, "utf8") : null;
  const text = mod.render(old, reg, path);
  writeConfig(path, text);
  return { host, text, output: path, merged: old !== null, registration: reg };
}

// ---- doctor --------------------------------------------------------------------------

export type RegistrationStatus = "ok" | "other_pyro" | "stale";

export interface CheckedRegistration {
  path: string;
  scope: string;
  command: string;
  args: string[];
  status: RegistrationStatus;
  detail: string;
}

export interface HostReport {
  host: HostId;
  installed: boolean;
  cli: string | null;
  config_files: string[];
  status: "ok" | "other_pyro" | "stale" | "unreadable" | "not_registered" | "not_installed";
  detail: string;
  hint: string | null;
  registrations: CheckedRegistration[];
}

/** Index of `mcp serve` in a registration's argv, or -1. */
function serveIndex(argv: string[]): number {
  return argv.findIndex((a, i) => a === "mcp" && argv[i + 1] === "serve");
}

function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** Does the registration start this pyro, another pyro, or nothing that works? */
async function checkRegistration(
  reg: Registration,
  env: Env,
  self: string[],
): Promise<{ status: RegistrationStatus; detail: string }> {
  const argv = [reg.command, ...reg.args];
  const i = serveIndex(argv);
  if (i < 1) return { status: "stale", detail: "it does not run `pyro mcp serve`" };
  const prefix = argv.slice(0, i);
  const exe = isAbsolute(prefix[0] as string) ? (prefix[0] as string) : findCli(prefix[0] as string, env);
  if (exe === null || !existsSync(exe)) return { status: "stale", detail: `${prefix[0]} does not exist` };
  const same =
    real(exe) === real(self[0] as string) &&
    prefix.length === self.length &&
    prefix.slice(1).every((a, k) => real(a) === real(self[k + 1] as string));
  if (same) return { status: "ok", detail: `this pyro (${exe})` };
  const v = await run([exe, ...prefix.slice(1), "--version"], env, 10_000);
  const version = /^pyro (\S+)/.exec(v.output)?.[1];
  if (v.code === 0 && version) return { status: "other_pyro", detail: `another pyro (${version}) at ${exe}` };
  return { status: "stale", detail: `${exe} is not pyro (\`--version\` did not answer "pyro VERSION")` };
}

export async function hostDoctor(ctx: Ctx, self: string[] = selfPathCommand()): Promise<HostReport[]> {
  const reports: HostReport[] = [];
  for (const id of HOST_IDS) {
    const mod = HOSTS[id];
    const cli = findCli(mod.cli, ctx.env);
    const files = mod.configFiles(ctx.env).filter((f) => existsSync(f));
    const base = { host: id, installed: cli !== null || files.length > 0, cli, config_files: files };
    let found: Found[];
    try {
      found = findAll(mod, ctx.env).found;
    } catch (err) {
      const msg = err instanceof PyroError ? err.message : String(err);
      reports.push({ ...base, status: "unreadable", detail: msg, hint: "fix the file", registrations: [] });
      continue;
    }
    const registrations: CheckedRegistration[] = [];
    for (const f of found) {
      const c = await checkRegistration(f.registration, ctx.env, self);
      registrations.push({ path: f.path, scope: f.scope, ...f.registration, ...c });
    }
    const connect = mod.addCommand ? `pyro host connect ${id}` : `pyro host print-config ${id} --output FILE`;
    const worst = (["stale", "other_pyro", "ok"] as const).find((s) =>
      registrations.some((r) => r.status === s),
    );
    if (worst === "stale" || worst === "other_pyro") {
      const bad = registrations.filter((r) => r.status === worst);
      reports.push({
        ...base,
        status: worst,
        detail: bad.map((r) => `${r.path} (${r.scope}): ${r.detail}`).join("; "),
        hint: `pyro host repair ${id}`,
        registrations,
      });
    } else if (worst === "ok") {
      reports.push({ ...base, status: "ok", detail: "registered: this pyro", hint: null, registrations });
    } else if (base.installed) {
      reports.push({
        ...base,
        status: "not_registered",
        detail: "pyro is not registered",
        hint: connect,
        registrations,
      });
    } else {
      reports.push({
        ...base,
        status: "not_installed",
        detail: `no ${mod.cli} on PATH and no config file`,
        hint: null,
        registrations,
      });
    }
  }
  return reports;
}

// ---- repair --------------------------------------------------------------------------

export interface RepairedEntry {
  path: string;
  scope: string;
  before: Registration;
  after: Registration;
}

/** Point every registration of pyro in `host`'s config that is not this pyro at this pyro, keeping its flags. */
export async function repairHost(
  ctx: Ctx,
  host: HostId,
  self: string[] = selfPathCommand(),
): Promise<{ repaired: RepairedEntry[]; unchanged: number }> {
  const mod = HOSTS[host];
  const { found } = findAll(mod, ctx.env);
  if (found.length === 0)
    throw new PyroError("INVALID_INPUT", `pyro is not registered with ${host}: nothing to repair`, {
      details: { config_files: mod.configFiles(ctx.env) },
      hint: mod.addCommand ? `pyro host connect ${host}` : `pyro host print-config ${host} --output FILE`,
    });
  const repaired: RepairedEntry[] = [];
  let unchanged = 0;
  const texts = new Map<string, string>();
  for (const f of found) {
    if ((await checkRegistration(f.registration, ctx.env, self)).status === "ok") {
      unchanged++;
      continue;
    }
    const argv = [f.registration.command, ...f.registration.args];
    const i = serveIndex(argv);
    const [command, ...pre] = self as [string, ...string[]];
    const after = { command, args: [...pre, ...(i < 1 ? serveArgs({}) : argv.slice(i))] };
    const text = texts.get(f.path) ?? readFileSync(f.path, "utf8");
    texts.set(f.path, mod.render(text, after, f.path, f.scope));
    repaired.push({ path: f.path, scope: f.scope, before: f.registration, after });
  }
  for (const [path, text] of texts) writeConfig(path, text);
  return { repaired, unchanged };
}
