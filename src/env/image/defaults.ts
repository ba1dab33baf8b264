/**
 * Command defaults of an environment made from an image (its manifest's `image` field):
 * the image's Env under the caller's env, and its WorkingDir as the starting directory.
 * Decision: a WorkingDir other than /workspace wins over /workspace when the caller gives
 * no cwd. The agent confines exec cwds to /workspace, so the command is started through
 * pyro's private shell (runtime.ts) as `cd -- DIR && exec CMD...`: argv commands work in
 * images without a shell; a command string still runs by the image's own /bin/sh.
 * Host compat has no image: callers pass no manifest there.
 */
import type { EnvironmentManifest } from "../store.ts";

/** KEY=VALUE strings of an image config as a record (a bare KEY is an empty value). */
export function envRecord(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const eq = kv.indexOf("=");
    if (eq > 0) out[kv.slice(0, eq)] = kv.slice(eq + 1);
    else if (eq < 0 && kv) out[kv] = "";
  }
  return out;
}

/** The shell pyro injects into every image environment (runtime.ts). */
export const PRIVATE_SH = "/.pyro/bin/sh";

/**
 * A command as it runs in an image environment: the image's Env under the caller's env, and
 * when the image sets a WorkingDir other than /workspace and the caller gave no cwd, the
 * command starts there (through pyro's private shell: `cd DIR && exec CMD...`, so argv
 * commands work in images without a shell; a command string still needs the image's /bin/sh).
 * Agent exec cwds are confined to /workspace, hence the `cd` instead of a cwd.
 */
export function withImageDefaults<
  T extends { command: string | string[]; cwd?: string; env?: Record<string, string> },
>(manifest: EnvironmentManifest | null | undefined, input: T): T {
  const img = manifest?.image;
  if (!img) return input;
  const out: T = { ...input, env: { ...envRecord(img.env), ...(input.env ?? {}) } };
  const wd = img.working_dir;
  if (!input.cwd && wd && wd !== "/workspace" && wd !== "/workspace/") {
    const argv = Array.isArray(input.command) ? input.command : ["/bin/sh", "-c", input.command];
    out.command = [PRIVATE_SH, "-c", 'cd -- "$0" && exec "$@"', wd, ...argv];
  }
  return out;
}
