/**
 * Installing environments into the store: local build (kernel + rootfs from Debian
 * packages) or pull from an OCI registry. Either way the version directory appears by one
 * rename, complete and verified, or not at all.
 */
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import initScript from "../../rootfs/init/pyro-init" with { type: "text" };
import type { HostCtx } from "../base/context.ts";
import { withLock } from "../base/lock.ts";
import { buildCacheDir } from "../base/paths.ts";
import { PyroError } from "../protocol/errors.ts";
import { PROTOCOL_VERSION, PYRO_VERSION } from "../protocol/version.ts";
import { agentBinary } from "../vmm/agent-path.ts";
import { findRecipe } from "./catalog.ts";
import {
  type EnvironmentManifest,
  envRoot,
  envVersionDir,
  findInstalled,
  type InstalledEnvironment,
  readManifest,
  sha256File,
  verifyEnvironment,
} from "./store.ts";

/**
 * sha256 of the /sbin/pyro-init this pyro bakes in. The init ships inside the pyro executable,
 * not the agent, so a changed init alone must also make an installed environment stale.
 */
export const INIT_SHA256 = createHash("sha256").update(initScript).digest("hex");

function requireRecipe(name: string) {
  const recipe = findRecipe(name);
  if (!recipe)
    throw new PyroError("ENVIRONMENT_NOT_FOUND", `unknown environment "${name}"`, {
      hint: "`pyro env list` shows the catalog",
    });
  return recipe;
}

/** Replace `dest` with the finished `staging` dir: rename aside, rename in, remove the old. */
export function publish(staging: string, dest: string): void {
  const old = `${dest}.old-${process.pid}`;
  if (existsSync(dest)) renameSync(dest, old);
  renameSync(staging, dest);
  rmSync(old, { recursive: true, force: true });
}

export async function buildInstall(
  ctx: HostCtx,
  name: string,
  opts: { force?: boolean },
): Promise<InstalledEnvironment> {
  const recipe = requireRecipe(name);
  const existing = findInstalled(ctx.home, name);
  if (existing && !opts.force) {
    // Up to date only if it carries exactly the agent and the init this pyro ships
    // (rebuilding then costs one mkfs: the kernel and package tree come from the build cache).
    const agentSha = await sha256File(agentBinary(ctx.env));
    const sameAgent = existing.manifest.agent_sha256 === agentSha;
    if (sameAgent && existing.manifest.init_sha256 === INIT_SHA256) {
      await verifyEnvironment(existing);
      return existing;
    }
    const other = sameAgent ? "/sbin/pyro-init" : "pyro-agent";
    ctx.progress(`environment ${name} holds another ${other}; rebuilding its root filesystem`);
  }
  if (process.getuid?.() !== 0) {
    throw new PyroError("PERMISSION_DENIED", "building an environment needs root (debootstrap)", {
      hint: `sudo pyro env build ${name}`,
    });
  }
  const cacheDir = buildCacheDir(ctx.env);
  // One build at a time per cache: concurrent builds would compile the same kernel twice.
  mkdirSync(cacheDir, { recursive: true });
  return withLock(
    join(cacheDir, "build.lock"),
    () => buildLocked(ctx, name, recipe, cacheDir),
    3 * 60 * 60 * 1000,
  );
}

async function buildLocked(
  ctx: HostCtx,
  name: string,
  recipe: NonNullable<ReturnType<typeof findRecipe>>,
  cacheDir: string,
): Promise<InstalledEnvironment> {
  const { buildKernel, buildRootfs } = await import("./build/index.ts");
  const kernel = await buildKernel({ cacheDir, onProgress: ctx.progress });
  const dest = envVersionDir(ctx.home, name, recipe.version);
  const staging = join(envRoot(ctx.home, name), `.staging-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    await buildRootfs({
      recipe,
      agentPath: agentBinary(ctx.env),
      cacheDir,
      outPath: join(staging, "rootfs.ext4"),
      onProgress: ctx.progress,
    });
    copyFileSync(kernel, join(staging, "vmlinux"));
    ctx.progress("hashing artifacts");
    const manifest: EnvironmentManifest = {
      name,
      version: recipe.version,
      kernel: {
        file: "vmlinux",
        sha256: await sha256File(join(staging, "vmlinux")),
        size: statSync(join(staging, "vmlinux")).size,
      },
      rootfs: {
        file: "rootfs.ext4",
        sha256: await sha256File(join(staging, "rootfs.ext4")),
        size: statSync(join(staging, "rootfs.ext4")).size,
      },
      agent_version: PYRO_VERSION,
      agent_sha256: await sha256File(agentBinary(ctx.env)),
      init_sha256: INIT_SHA256,
      protocol_version: PROTOCOL_VERSION,
      built_at: new Date().toISOString(),
      packages: [...recipe.packages],
    };
    writeFileSync(join(staging, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    publish(staging, dest);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  const installed = { dir: dest, manifest: readManifest(dest) as EnvironmentManifest };
  await verifyEnvironment(installed);
  ctx.progress(`installed ${name} (${recipe.version}) in ${dest}`);
  return installed;
}

export async function pullInstall(
  ctx: HostCtx,
  name: string,
  opts: { from?: string; force?: boolean },
): Promise<InstalledEnvironment> {
  const existing = findInstalled(ctx.home, name);
  if (existing && !opts.force) {
    try {
      await verifyEnvironment(existing);
      return existing;
    } catch {
      ctx.progress(`installed ${name} is corrupt; pulling it again`);
    }
  }
  const { environmentReference, pullEnvironment } = await import("./oci/index.ts");
  const ref = environmentReference(name, opts.from, ctx.env);
  // Pull into a staging name first: the version comes from the artifact's own manifest.
  const staging = join(envRoot(ctx.home, name), `.pull-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(envRoot(ctx.home, name), { recursive: true });
  const result = await pullEnvironment(ref, staging, { onProgress: ctx.progress, env: ctx.env });
  if (result.manifest.name !== name) {
    rmSync(staging, { recursive: true, force: true });
    throw new PyroError(
      "ENVIRONMENT_CORRUPT",
      `${ref} holds environment ${result.manifest.name}, not ${name}`,
    );
  }
  const dest = envVersionDir(ctx.home, name, result.manifest.version);
  publish(staging, dest);
  const installed = { dir: dest, manifest: readManifest(dest) as EnvironmentManifest };
  await verifyEnvironment(installed, { force: true });
  ctx.progress(`pulled ${name} from ${ref} (${result.digest})`);
  return installed;
}

export async function pushInstalled(
  ctx: HostCtx,
  name: string,
  ref: string,
): Promise<{ digest: string; ref: string }> {
  const installed = findInstalled(ctx.home, name);
  if (!installed)
    throw new PyroError("ENVIRONMENT_NOT_FOUND", `environment ${name} is not installed`, {
      hint: `pyro env build ${name}`,
    });
  await verifyEnvironment(installed, { force: true });
  const { pushEnvironment } = await import("./oci/index.ts");
  const r = await pushEnvironment(installed.dir, ref, { onProgress: ctx.progress, env: ctx.env });
  return { digest: r.digest, ref: r.ref };
}
