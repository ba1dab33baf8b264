/**
 * Installed environments: `$PYRO_HOME/environments/<slug>/<version>/{vmlinux, rootfs.ext4,
 * manifest.json}`. Digests are checked before boot; a verified stamp (size, mtime, ctime,
 * device and inode) avoids re-hashing unchanged files on every boot while still catching any
 * rewrite, including one whose mtime was put back.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { writeFileAtomic } from "../base/atomic.ts";
import { environmentsDir } from "../base/paths.ts";
import { PyroError } from "../protocol/errors.ts";
import type { EnvironmentArtifacts } from "../vmm/types.ts";

const FileEntry = v.object({
  file: v.string(),
  sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  size: v.number(),
});
export const EnvironmentManifest = v.object({
  name: v.string(),
  version: v.string(),
  kernel: FileEntry,
  rootfs: FileEntry,
  agent_version: v.string(),
  /** sha256 of the pyro-agent baked in: a rebuild is due when the host's agent differs */
  agent_sha256: v.optional(v.string()),
  /** sha256 of the /sbin/pyro-init baked in (catalog builds): a rebuild is due when pyro's differs */
  init_sha256: v.optional(v.string()),
  protocol_version: v.number(),
  built_at: v.string(),
  packages: v.array(v.string()),
  /** custom environments (src/env/image): not from the catalog */
  custom: v.optional(v.boolean()),
  /** where a custom environment came from: an image reference, a local archive, or a recipe file */
  source: v.optional(
    v.object({ kind: v.picklist(["image", "archive", "recipe"]), ref: v.string(), digest: v.string() }),
  ),
  /** the image config carried over: defaults for commands (see withImageDefaults) */
  image: v.optional(
    v.object({
      env: v.array(v.string()),
      working_dir: v.nullable(v.string()),
      user: v.nullable(v.string()),
      entrypoint: v.array(v.string()),
      cmd: v.array(v.string()),
    }),
  ),
});
export type EnvironmentManifest = v.InferOutput<typeof EnvironmentManifest>;

export const envSlug = (name: string) => name.replace(/[^a-z0-9.-]+/gi, "-");
export const envRoot = (home: string, name: string) => join(environmentsDir(home), envSlug(name));
export const envVersionDir = (home: string, name: string, version: string) =>
  join(envRoot(home, name), version);

export async function sha256File(path: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) h.update(chunk);
  return h.digest("hex");
}

/** The manifest entry of `file` in `dir`: name, sha256 and size. */
export async function fileEntry(dir: string, file: string): Promise<EnvironmentManifest["kernel"]> {
  const p = join(dir, file);
  return { file, sha256: await sha256File(p), size: statSync(p).size };
}

/** Names of every installed environment (catalog or custom), from the manifests on disk. */
export function installedNames(home: string): string[] {
  const root = environmentsDir(home);
  if (!existsSync(root)) return [];
  const names = new Set<string>();
  for (const slug of readdirSync(root)) {
    if (slug.startsWith(".") || !statSync(join(root, slug)).isDirectory()) continue;
    for (const version of readdirSync(join(root, slug))) {
      if (version.startsWith(".")) continue;
      const m = readManifest(join(root, slug, version));
      if (m) names.add(m.name);
    }
  }
  return [...names].sort();
}

/**
 * What a verified file must still be for its hash to be trusted. The ctime is in it because
 * no user call can set it: a rewrite that restores size and mtime (`touch -r`) still moves
 * the ctime, so it is hashed again.
 */
function stampOf(path: string): string {
  const s = statSync(path, { bigint: true });
  return `${s.size}:${s.mtimeNs}:${s.ctimeNs}:${s.dev}:${s.ino}`;
}

export interface InstalledEnvironment {
  dir: string;
  manifest: EnvironmentManifest;
}

export function readManifest(dir: string): EnvironmentManifest | null {
  const p = join(dir, "manifest.json");
  if (!existsSync(p)) return null;
  try {
    const parsed = v.safeParse(EnvironmentManifest, JSON.parse(readFileSync(p, "utf8")));
    return parsed.success ? parsed.output : null;
  } catch {
    return null;
  }
}

/** Installed versions of an environment, newest last (by built_at). */
export function installedVersions(home: string, name: string): InstalledEnvironment[] {
  const root = envRoot(home, name);
  if (!existsSync(root)) return [];
  const out: InstalledEnvironment[] = [];
  for (const version of readdirSync(root)) {
    if (version.startsWith(".")) continue; // staging dirs
    const dir = join(root, version);
    const manifest = readManifest(dir);
    if (manifest && manifest.name === name) out.push({ dir, manifest });
  }
  return out.sort((a, b) => a.manifest.built_at.localeCompare(b.manifest.built_at));
}

export function findInstalled(home: string, name: string): InstalledEnvironment | null {
  return installedVersions(home, name).at(-1) ?? null;
}

/**
 * Check every file against the manifest. Throws ENVIRONMENT_CORRUPT naming the file, so
 * a damaged environment is never booted.
 */
export async function verifyEnvironment(
  env: InstalledEnvironment,
  opts: { force?: boolean } = {},
): Promise<void> {
  const stampPath = join(env.dir, ".verified");
  const files = [env.manifest.kernel, env.manifest.rootfs];
  for (const f of files) {
    const p = join(env.dir, f.file);
    if (!existsSync(p)) throw corrupt(env, `${f.file} is missing`);
    if (statSync(p).size !== f.size) throw corrupt(env, `${f.file} has the wrong size`);
  }
  const stamp = files.map((f) => stampOf(join(env.dir, f.file))).join("|");
  if (!opts.force && existsSync(stampPath) && readFileSync(stampPath, "utf8") === stamp) return;
  for (const f of files) {
    const digest = await sha256File(join(env.dir, f.file));
    if (digest !== f.sha256) throw corrupt(env, `${f.file} does not match its sha256 digest`);
  }
  writeFileAtomic(stampPath, stamp, 0o644);
}

function corrupt(env: InstalledEnvironment, what: string): PyroError {
  return new PyroError("ENVIRONMENT_CORRUPT", `environment ${env.manifest.name} is corrupt: ${what}`, {
    details: { dir: env.dir },
    hint: env.manifest.custom
      ? `recreate it with \`pyro env create ${env.manifest.name} --force\` from its image (${env.manifest.source?.ref ?? "unknown"})`
      : `repair it with \`pyro env build ${env.manifest.name} --force\` (or \`pyro env pull ${env.manifest.name}\`)`,
  });
}

export function artifactsOf(env: InstalledEnvironment): EnvironmentArtifacts {
  return {
    name: env.manifest.name,
    version: env.manifest.version,
    kernelPath: join(env.dir, env.manifest.kernel.file),
    rootfsPath: join(env.dir, env.manifest.rootfs.file),
  };
}

export function removeEnvironment(home: string, name: string): number {
  const versions = installedVersions(home, name);
  rmSync(envRoot(home, name), { recursive: true, force: true });
  return versions.length;
}

/** Does this environment's agent speak our protocol? (A stale one is rebuilt or refused.) */
export function speaksOurProtocol(env: InstalledEnvironment, protocolVersion: number): boolean {
  return env.manifest.protocol_version === protocolVersion;
}
