/**
 * OCI distribution for pyro environments: push an installed environment directory to any
 * OCI registry, pull one back (verified, resumable, atomic). Format: docs/registry.md.
 */
import { PyroError } from "../../protocol/errors.ts";
import type { Env } from "./auth.ts";
import { formatReference, parseReference } from "./reference.ts";

export type { EnvironmentManifest, OciManifest } from "./artifact.ts";
export { MEDIA_TYPES } from "./artifact.ts";
export type { Credentials } from "./auth.ts";
export { credentialsFromEnv } from "./auth.ts";
export type { RegistryOptions } from "./client.ts";
export type { InspectResult, PullOptions, PullResult } from "./pull.ts";
export { inspectEnvironment, partialBlobPath, pullEnvironment, pullStagingDir } from "./pull.ts";
export type { PushOptions, PushResult } from "./push.ts";
export { pushEnvironment } from "./push.ts";
export type { Reference } from "./reference.ts";
export { formatReference, isLoopbackHost, parseReference } from "./reference.ts";

/** `PYRO_REGISTRY` (`host[:port][/namespace]`), or undefined: no public default is assumed. */
export function defaultRegistry(env: Env = process.env): string | undefined {
  const value = env.PYRO_REGISTRY?.trim();
  return value ? value : undefined;
}

/** PYRO_REGISTRY as read at startup. */
export const DEFAULT_REGISTRY: string | undefined = defaultRegistry();

/**
 * The reference to pull a catalog environment (`debian:12`) from: `from` when given,
 * else `<PYRO_REGISTRY>/<name>`; with neither, a REGISTRY_ERROR that says what to do.
 */
export function environmentReference(name: string, from?: string, env: Env = process.env): string {
  if (from) return formatReference(parseReference(from, defaultRegistry(env)));
  const registry = defaultRegistry(env);
  if (!registry) {
    throw new PyroError("REGISTRY_ERROR", `no registry to pull ${name} from: PYRO_REGISTRY is not set`, {
      hint: "set PYRO_REGISTRY (e.g. localhost:5000/pyro), pass --from <registry/repo:tag>, or build the environment locally",
    });
  }
  return formatReference(parseReference(name, registry));
}
