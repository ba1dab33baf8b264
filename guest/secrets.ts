/**
 * The workspace's secrets inside the agent (secrets.set, sent by the supervisor after every
 * boot), and their injection into one command's environment (`secret_env` on exec,
 * shell.open and service.start).
 *
 * Invariants:
 * - Values live in the agent's memory and, in a guest, in SECRETS_DIR: a tmpfs (/run is
 *   mounted by pyro-init) outside /workspace and outside the data disk, so no export, diff,
 *   snapshot or disk export can carry them; the directory is 0700, each file 0400, named
 *   after the secret. A host-compat agent keeps them in memory only (the host has no private
 *   tmpfs of ours to put them on).
 * - secrets.set replaces the whole set (files of secrets no longer named are removed).
 * - Per call only names arrive (`secret_env`: name → variable); an undeclared name is
 *   SECRET_NOT_FOUND before anything runs. The agent never prints or logs a value.
 */
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PyroError } from "../src/protocol/errors.ts";

const SECRETS_DIR = "/run/pyro/secrets";

const values = new Map<string, string>();

export function setSecrets(list: Array<{ name: string; value: string }>, guest: boolean): { count: number } {
  values.clear();
  for (const s of list) values.set(s.name, s.value);
  if (guest) materialise(SECRETS_DIR);
  return { count: values.size };
}

/** Write the set as files under `dir` (0700; files 0400), dropping files of names no longer in it. */
function materialise(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  for (const f of readdirSync(dir)) if (!values.has(f)) rmSync(join(dir, f), { force: true });
  for (const [name, value] of values) {
    // removed first: the mode applies only to a file being created
    const file = join(dir, name);
    rmSync(file, { force: true });
    writeFileSync(file, value, { mode: 0o400 });
  }
}

/** The environment variables `secret_env` asks for (secret name → variable name). */
export function secretEnv(wanted: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, envVar] of Object.entries(wanted ?? {})) {
    const value = values.get(name);
    if (value === undefined) {
      throw new PyroError("SECRET_NOT_FOUND", `this workspace has no secret named ${name}`, {
        details: { name, declared: [...values.keys()].sort() },
        hint: "secrets are declared at create: `pyro workspace create --secret NAME=VALUE` or `--secret-file NAME=PATH`",
      });
    }
    out[envVar] = value;
  }
  return out;
}
