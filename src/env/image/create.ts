/**
 * `pyro env create NAME --from-image REF | --from-archive PATH`: a custom environment from
 * an OCI/Docker image. Steps: resolve the image (source.ts; layers cached by digest), apply
 * its layers in order to a private staging tree (apply.ts; each layer's uncompressed bytes
 * checked against the config's diff_id), add pyro's runtime (runtime.ts), `mkfs.ext4 -d`
 * the tree, take the kernel of an installed catalog environment (or the build cache's), and
 * install kernel + rootfs + manifest by one rename. Any failure removes the staging tree and
 * the staging install dir: nothing half-installed ever becomes visible.
 *
 * Names: lowercase `[a-z0-9][a-z0-9._:-]{0,62}`; a catalog name, or one that shares a
 * catalog name's store directory (`debian-12` for `debian:12`), is NAME_CONFLICT.
 *
 * The image config travels in the manifest (`image`: env, working_dir, user, entrypoint,
 * cmd); withImageDefaults() applies env and working dir to commands run in the guest.
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { HostCtx } from "../../base/context.ts";
import { withLock } from "../../base/lock.ts";
import { buildCacheDir, environmentsDir } from "../../base/paths.ts";
import { PyroError } from "../../protocol/errors.ts";
import { PROTOCOL_VERSION, PYRO_VERSION } from "../../protocol/version.ts";
import { agentBinary } from "../../vmm/agent-path.ts";
import { removeStale, scratchPath } from "../build/cache.ts";
import { mkfsFromTree } from "../build/rootfs.ts";
import { CATALOG } from "../catalog.ts";
import type { Compression } from "../oci/artifact.ts";
import { Digester, decompress, readChunks } from "../oci/io.ts";
import {
  type EnvironmentManifest,
  envRoot,
  envSlug,
  envVersionDir,
  fileEntry,
  findInstalled,
  type InstalledEnvironment,
  installedVersions,
  readManifest,
  sha256File,
  verifyEnvironment,
} from "../store.ts";
import { applyLayer, ScopedTree } from "./apply.ts";
import { injectRuntime } from "./runtime.ts";
import { type ImageConfig, type ResolvedImage, resolveFromArchive, resolveFromRegistry } from "./source.ts";

export const CUSTOM_NAME = /^[a-z0-9][a-z0-9._:-]{0,62}$/;

/** Refuse names that are not custom-environment names or would shadow the catalog. */
export function checkCustomName(home: string, name: string): void {
  if (!CUSTOM_NAME.test(name))
    throw new PyroError("INVALID_INPUT", `environment name "${name}" must match [a-z0-9][a-z0-9._:-]{0,62}`);
  const clash = CATALOG.find((r) => r.name === name || envSlug(r.name) === envSlug(name));
  if (clash)
    throw new PyroError("NAME_CONFLICT", `"${name}" would shadow the catalog environment ${clash.name}`, {
      details: { environment: name, catalog: clash.name },
      hint: "pick another name for the custom environment",
    });
  const other = installedVersions(home, name).length === 0 ? otherNameInDir(home, name) : undefined;
  if (other)
    throw new PyroError("NAME_CONFLICT", `"${name}" shares its store directory with environment ${other}`, {
      details: { environment: name, other },
    });
}

function otherNameInDir(home: string, name: string): string | undefined {
  const root = envRoot(home, name);
  if (!existsSync(root)) return undefined;
  for (const v of readdirSync(root)) {
    const m = readManifest(join(root, v));
    if (m && m.name !== name) return m.name;
  }
  return undefined;
}

function compressionOf(path: string): Compression {
  const fd = openSync(path, "r");
  const head = Buffer.alloc(4);
  try {
    readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.readUInt32LE(0) === 0xfd2fb528) return "zstd";
  return "none";
}

/** The image config as the manifest keeps it. */
/**
 * Land a custom environment staged in `staging` (rootfs.ext4 and vmlinux, described by
 * `manifest`): write its manifest, move it into place by one rename, drop older versions of the
 * name (the newest is what boots), and verify it by content. Images and recipes both end here.
 */
export async function publishCustom(
  home: string,
  staging: string,
  manifest: EnvironmentManifest,
): Promise<InstalledEnvironment> {
  writeFileSync(join(staging, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  const { publish } = await import("../install.ts");
  const dest = envVersionDir(home, manifest.name, manifest.version);
  publish(staging, dest);
  for (const old of installedVersions(home, manifest.name))
    if (old.dir !== dest) rmSync(old.dir, { recursive: true, force: true });
  const installed = { dir: dest, manifest: readManifest(dest) as EnvironmentManifest };
  await verifyEnvironment(installed, { force: true });
  return installed;
}

/** After a failed create: the staging dir goes, and the name's directory if no version of it is left. */
export function discardFailedCreate(home: string, name: string, staging: string): void {
  rmSync(staging, { recursive: true, force: true });
  if (installedVersions(home, name).length === 0)
    rmSync(envRoot(home, name), { recursive: true, force: true });
}

export function imageDefaults(config: ImageConfig): NonNullable<EnvironmentManifest["image"]> {
  const c = config.config ?? {};
  return {
    env: c.Env ?? [],
    working_dir: c.WorkingDir || null,
    user: c.User || null,
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
  };
}

/** Kernel for a custom environment: an installed catalog environment's, else the build cache's. */
async function kernelFor(ctx: HostCtx, cacheDir: string): Promise<string> {
  for (const r of CATALOG) {
    const inst = findInstalled(ctx.home, r.name);
    if (!inst) continue;
    try {
      await verifyEnvironment(inst);
      return join(inst.dir, inst.manifest.kernel.file);
    } catch {
      // a corrupt one is no source
    }
  }
  ctx.progress("no installed catalog environment to take a kernel from: building it (cached)");
  const { buildKernel } = await import("../build/index.ts");
  return buildKernel({ cacheDir, onProgress: ctx.progress });
}

export async function createFromImage(
  ctx: HostCtx,
  name: string,
  from: { image?: string; archive?: string; force?: boolean },
): Promise<InstalledEnvironment> {
  if (!from.image === !from.archive)
    throw new PyroError("INVALID_INPUT", "give exactly one of --from-image REF or --from-archive PATH");
  checkCustomName(ctx.home, name);
  const existing = findInstalled(ctx.home, name);
  if (existing && !from.force)
    throw new PyroError("ALREADY_EXISTS", `environment ${name} already exists`, {
      hint: `replace it with --force, or \`pyro env delete ${name}\` first`,
    });
  const cacheDir = buildCacheDir(ctx.env);
  mkdirSync(cacheDir, { recursive: true });
  // One import per environment name at a time; layers are shared safely (rename-published).
  // The lock lives beside the environment's directory, which a failed create removes.
  const lock = join(environmentsDir(ctx.home), `.create-${envSlug(name)}.lock`);
  return withLock(lock, () => createLocked(ctx, name, from, cacheDir), 3600_000);
}

async function createLocked(
  ctx: HostCtx,
  name: string,
  from: { image?: string; archive?: string },
  cacheDir: string,
): Promise<InstalledEnvironment> {
  const say = ctx.progress;
  const stagingRoot = join(cacheDir, "staging");
  await mkdir(stagingRoot, { recursive: true });
  removeStale(stagingRoot);
  const treeDir = scratchPath(stagingRoot, "image", envSlug(name));
  const installStaging = join(envRoot(ctx.home, name), `.staging-${process.pid}`);
  try {
    const image: ResolvedImage = from.image
      ? await resolveFromRegistry(from.image, cacheDir, { env: ctx.env, say })
      : await resolveFromArchive(from.archive!, cacheDir, say);
    const version = `img-${image.digest.replace(/^sha256:/, "").slice(0, 12)}`;
    await mkdir(treeDir, { recursive: true });
    const tree = new ScopedTree(treeDir);
    try {
      for (const [i, path] of image.layers.entries()) {
        const which = `${i + 1}/${image.layers.length}`;
        const d = new Digester();
        const hashed = async function* () {
          for await (const chunk of decompress(readChunks(path), compressionOf(path))) {
            d.update(chunk);
            yield chunk;
          }
        };
        const stats = await applyLayer(tree, hashed(), which, (entry, why) =>
          say(`layer ${which}: dropped ${entry} (${why})`),
        );
        const diffId = image.config.rootfs.diff_ids[i];
        if (`sha256:${d.hex()}` !== diffId)
          throw new PyroError(
            "ENVIRONMENT_CORRUPT",
            `layer ${which} of ${image.ref} does not match its diff_id ${diffId}`,
            {
              details: { layer: i + 1, diff_id: diffId },
            },
          );
        say(
          `layer ${which}: ${stats.entries} entries, ${stats.whiteouts} whiteouts, ${stats.dropped} dropped`,
          { step: "layers applied", done: i + 1, total: image.layers.length, unit: "steps" },
        );
      }
      await injectRuntime(tree, { agentPath: agentBinary(ctx.env), env: ctx.env, say });
    } finally {
      tree.close();
    }
    rmSync(installStaging, { recursive: true, force: true });
    await mkdir(installStaging, { recursive: true });
    await mkfsFromTree(treeDir, join(installStaging, "rootfs.ext4"), `environment ${name}`, say);
    copyFileSync(await kernelFor(ctx, cacheDir), join(installStaging, "vmlinux"));
    say("hashing artifacts");
    const manifest: EnvironmentManifest = {
      name,
      version,
      kernel: await fileEntry(installStaging, "vmlinux"),
      rootfs: await fileEntry(installStaging, "rootfs.ext4"),
      agent_version: PYRO_VERSION,
      agent_sha256: await sha256File(agentBinary(ctx.env)),
      protocol_version: PROTOCOL_VERSION,
      built_at: new Date().toISOString(),
      packages: [],
      custom: true,
      source: { kind: from.image ? "image" : "archive", ref: image.ref, digest: image.digest },
      image: imageDefaults(image.config),
    };
    const installed = await publishCustom(ctx.home, installStaging, manifest);
    say(`created ${name} (${version}) from ${image.ref}`);
    return installed;
  } catch (err) {
    discardFailedCreate(ctx.home, name, installStaging);
    throw err;
  } finally {
    await rm(treeDir, { recursive: true, force: true });
  }
}
