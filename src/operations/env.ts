/** Environment operations: catalog, inspect, build, pull, push, prune. */
import * as v from "valibot";
import { CATALOG, findRecipe } from "../env/catalog.ts";
import { findInstalled, installedVersions, removeEnvironment, verifyEnvironment } from "../env/store.ts";
import { PyroError } from "../protocol/errors.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { renderTable } from "./render.ts";
import { defineOperation } from "./types.ts";

export const envListOp = defineOperation({
  name: "vm_list_environments",
  sdk: "listEnvironments",
  output: out.environmentList,
  mutates: false,
  cli: ["env", "list"],
  summary: "List the environment catalog and what is installed.",
  description:
    "List every environment in the catalog (debian:12, debian:12-base, debian:12-build) with installed: true/false and the installed version.",
  input: v.strictObject({}),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-full"],
  run: async (ctx) => {
    const environments = CATALOG.map((r) => {
      const inst = findInstalled(ctx.home, r.name);
      return {
        name: r.name,
        description: r.description,
        packages: [...r.packages],
        installed: inst !== null,
        version: inst?.manifest.version ?? null,
        default: r.name === "debian:12",
      };
    });
    return { environments, count: environments.length };
  },
  render: (out) =>
    renderTable([
      ["NAME", "INSTALLED", "DESCRIPTION"],
      ...(out.environments as Array<Record<string, unknown>>).map((e) => [
        String(e.name),
        e.installed ? `yes (${e.version})` : "no",
        String(e.description),
      ]),
    ]),
});

const envName = v.strictObject({ environment: f.environment });

export const envInspectOp = defineOperation({
  name: "env_inspect",
  sdk: "inspectEnvironment",
  sdkArgs: ["environment"],
  output: out.environmentInspected,
  mutates: false,
  cli: ["env", "inspect"],
  positionals: ["environment"],
  summary: "Show an environment's recipe and installed artifacts (digests verified).",
  description:
    "Show the recipe of an environment and, when installed, its manifest (kernel and rootfs digests, agent version) after verifying the files.",
  input: envName,
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: [],
  notOverMcp:
    "its result names host paths of the installed artifacts; `vm_list_environments` gives a model what it needs.",
  run: async (ctx, input) => {
    const recipe = findRecipe(input.environment);
    const inst = findInstalled(ctx.home, input.environment);
    if (!recipe && !inst)
      throw new PyroError("ENVIRONMENT_NOT_FOUND", `unknown environment "${input.environment}"`);
    let verified: boolean | null = null;
    let problem: string | null = null;
    if (inst) {
      try {
        await verifyEnvironment(inst, { force: true });
        verified = true;
      } catch (err) {
        verified = false;
        problem = (err as Error).message;
      }
    }
    return {
      name: input.environment,
      recipe: recipe ?? null,
      installed: inst !== null,
      dir: inst?.dir ?? null,
      manifest: inst?.manifest ?? null,
      verified,
      problem,
    };
  },
});

export const envBuildOp = defineOperation({
  name: "env_build",
  sdk: "buildEnvironment",
  sdkArgs: ["environment"],
  output: out.environmentInstalled,
  mutates: false,
  cli: ["env", "build"],
  positionals: ["environment"],
  summary: "Build an environment locally from Debian packages (needs root).",
  description:
    "Build kernel and root filesystem of a catalog environment from Debian packages and install it. Builds are cached by the hash of their inputs.",
  input: v.strictObject({
    environment: f.environment,
    force: v.optional(v.pipe(v.boolean(), v.description("Rebuild even if installed."))),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  profiles: [],
  notOverMcp:
    "it needs root and runs debootstrap and a kernel build for minutes: host administration, for the user.",
  run: async (ctx, input) => {
    const { buildInstall } = await import("../env/install.ts");
    const inst = await buildInstall(ctx, input.environment, { force: input.force ?? false });
    return { name: input.environment, dir: inst.dir, manifest: inst.manifest };
  },
  render: (out) => `installed ${out.name} in ${out.dir}`,
});

export const envPullOp = defineOperation({
  name: "env_pull",
  sdk: "pullEnvironment",
  sdkArgs: ["environment"],
  output: out.environmentInstalled,
  mutates: false,
  cli: ["env", "pull"],
  positionals: ["environment"],
  summary: "Pull an environment from an OCI registry (PYRO_REGISTRY or --from REF).",
  description: "Download an environment from an OCI registry, verify every digest, and install it.",
  input: v.strictObject({
    environment: f.environment,
    from: v.optional(
      v.pipe(v.string(), v.description("Full reference to pull, e.g. localhost:5000/pyro/debian:12.")),
    ),
    force: v.optional(v.pipe(v.boolean(), v.description("Pull even if installed."))),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  profiles: [],
  notOverMcp:
    "it downloads into the host's environment store from a registry: installing environments is the user's call (a missing one is prepared automatically on first use).",
  run: async (ctx, input) => {
    const { pullInstall } = await import("../env/install.ts");
    const inst = await pullInstall(ctx, input.environment, { from: input.from, force: input.force ?? false });
    return { name: input.environment, dir: inst.dir, manifest: inst.manifest };
  },
  render: (out) => `installed ${out.name} in ${out.dir}`,
});

export const envPushOp = defineOperation({
  name: "env_push",
  sdk: "pushEnvironment",
  sdkArgs: ["environment", "ref"],
  output: out.environmentPushed,
  mutates: false,
  cli: ["env", "push"],
  positionals: ["environment", "ref"],
  summary: "Push an installed environment to an OCI registry.",
  description: "Upload an installed environment as an OCI artifact to a registry reference.",
  input: v.strictObject({
    environment: f.environment,
    ref: v.pipe(
      v.string(),
      v.minLength(1),
      v.description("Target reference, e.g. localhost:5000/pyro/debian:12."),
    ),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  profiles: [],
  notOverMcp:
    "it uploads host artifacts to a registry the caller names: a model must never send data off the host.",
  run: async (ctx, input) => {
    const { pushInstalled } = await import("../env/install.ts");
    return pushInstalled(ctx, input.environment, input.ref);
  },
  render: (out) => `pushed ${out.ref} (${out.digest})`,
});

export const envPruneOp = defineOperation({
  name: "env_prune",
  sdk: "pruneEnvironments",
  sdkArgs: ["environment"],
  output: out.environmentsPruned,
  mutates: false,
  cli: ["env", "prune"],
  positionals: ["environment"],
  summary: "Remove installed environments (one, or all when none is named).",
  description:
    "Delete installed environment artifacts from the local store. Workspaces using them cannot boot until it is installed again.",
  input: v.strictObject({ environment: v.optional(f.environment) }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  profiles: [],
  notOverMcp:
    "it deletes installed environments, which other workspaces need to boot: host administration, for the user.",
  run: async (ctx, input) => {
    const names = input.environment ? [input.environment] : CATALOG.map((r) => r.name);
    const removed: string[] = [];
    for (const n of names)
      if (installedVersions(ctx.home, n).length > 0 && removeEnvironment(ctx.home, n) > 0) removed.push(n);
    return { removed, count: removed.length };
  },
  render: (out) =>
    (out.removed as string[]).length
      ? `removed ${(out.removed as string[]).join(", ")}`
      : "nothing to remove",
});
