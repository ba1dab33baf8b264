/**
 * Make sure an environment is installed before a command needs it: verify what is there,
 * else build it locally (where this host can) or pull it from the configured registry,
 * else fail with the exact command that fixes it.
 */
import type { HostCtx } from "../base/context.ts";
import { PyroError } from "../protocol/errors.ts";
import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { findRecipe } from "./catalog.ts";
import { findInstalled, type InstalledEnvironment, speaksOurProtocol, verifyEnvironment } from "./store.ts";

export function canBuildLocally(env: Record<string, string | undefined>): boolean {
  if (env.PYRO_AUTO_BUILD === "0") return false;
  return process.getuid?.() === 0 && Bun.which("debootstrap") !== null && Bun.which("mkfs.ext4") !== null;
}

export async function ensureEnvironment(
  ctx: HostCtx,
  name: string,
  opts: { allowMissing: boolean },
): Promise<InstalledEnvironment | null> {
  const installed = findInstalled(ctx.home, name);
  const recipe = findRecipe(name);
  if (!installed && !recipe) {
    throw new PyroError("ENVIRONMENT_NOT_FOUND", `unknown environment "${name}"`, {
      hint: "`pyro env list` shows the catalog",
    });
  }
  if (installed && speaksOurProtocol(installed, PROTOCOL_VERSION)) {
    await verifyEnvironment(installed);
    return installed;
  }
  if (installed) {
    // Built by another pyro: its agent cannot talk to us. Rebuild it where we can.
    if (!canBuildLocally(ctx.env) || !recipe) {
      throw new PyroError(
        "AGENT_VERSION_MISMATCH",
        `environment ${name} was built for protocol ${installed.manifest.protocol_version}, this pyro speaks ${PROTOCOL_VERSION}`,
        {
          hint: `rebuild it with \`sudo pyro env build ${name} --force\` (or pull a matching one)`,
        },
      );
    }
    ctx.progress(`environment ${name} was built by another pyro version; rebuilding it`);
    const { buildInstall } = await import("./install.ts");
    return buildInstall(ctx, name, { force: true });
  }
  // Host compat was allowed: do not make the user wait for a build they did not ask for.
  if (opts.allowMissing) return null;
  if (ctx.env.PYRO_REGISTRY) {
    ctx.progress(`environment ${name} is not installed; pulling it from ${ctx.env.PYRO_REGISTRY}`);
    const { pullInstall } = await import("./install.ts");
    return pullInstall(ctx, name, {});
  }
  if (canBuildLocally(ctx.env)) {
    ctx.progress(`environment ${name} is not installed; building it locally (first time: ~10 minutes)`);
    const { buildInstall } = await import("./install.ts");
    return buildInstall(ctx, name, {});
  }
  throw new PyroError("ENVIRONMENT_NOT_FOUND", `environment ${name} is not installed`, {
    hint: `build it with \`sudo pyro env build ${name}\`, or set PYRO_REGISTRY and run \`pyro env pull ${name}\``,
  });
}
