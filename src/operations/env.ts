/** Environment operations: catalog, inspect, build, pull, push, prune. */
import * as v from "valibot";
import { buildCacheDir } from "../base/paths.ts";
import { sweepBuildCache } from "../env/build/cache.ts";
import { CATALOG, findRecipe } from "../env/catalog.ts";
import {
  findInstalled,
  type InstalledEnvironment,
  installedNames,
  installedVersions,
  removeEnvironment,
  verifyEnvironment,
} from "../env/store.ts";
import type { Ctx } from "../manager/context.ts";
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
        custom: false,
        source: null as string | null,
      };
    });
    for (const inst of customEnvironments(ctx.home)) {
      environments.push({
        name: inst.manifest.name,
        description: `custom, from ${inst.manifest.source?.ref ?? "an image"}`,
        packages: [],
        installed: true,
        version: inst.manifest.version,
        default: false,
        custom: true,
        source: inst.manifest.source?.ref ?? null,
      });
    }
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
    "Delete installed environment artifacts from the local store. Workspaces using them cannot boot until it is installed again. Also removes the scratch trees that killed environment builds left in the build cache (a kernel build's is ~1.5 GB); a running build's is kept.",
  input: v.strictObject({ environment: v.optional(f.environment) }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  profiles: [],
  notOverMcp:
    "it deletes installed environments, which other workspaces need to boot: host administration, for the user.",
  run: async (ctx, input) => {
    sweepBuildCache(buildCacheDir(ctx.env));
    // Bare prune: the catalog's (re-installable) and custom ones no workspace uses.
    const used = input.environment ? new Set<string>() : await environmentsInUse(ctx);
    const custom = customEnvironments(ctx.home)
      .map((i) => i.manifest.name)
      .filter((n) => !used.has(n));
    const names = input.environment ? [input.environment] : [...CATALOG.map((r) => r.name), ...custom];
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

export const envSaveOp = defineOperation({
  name: "env_save",
  sdk: "saveEnvironment",
  sdkArgs: ["environment", "output"],
  output: out.environmentSaved,
  mutates: false,
  cli: ["env", "save"],
  positionals: ["environment"],
  summary: "Save an installed environment as one archive file (for CI images; no registry).",
  description:
    "Write an installed environment (kernel, rootfs, manifest) as one OCI-layout tar holding the same artifact `env push` sends; `env load` installs it on another host. Files are verified against their digests first.",
  input: v.strictObject({
    environment: f.environment,
    output: v.pipe(
      v.string(),
      v.minLength(1),
      v.description("Archive file to write (replaced if it exists)."),
    ),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: [],
  notOverMcp:
    "it copies host artifacts to a host path of the caller's choosing: host administration, for the user.",
  hostPaths: { output: "write" },
  examples: ["pyro env save debian:12 --output debian-12.pyroenv.tar"],
  run: async (ctx, input) => {
    const { saveEnvironment } = await import("../env/save.ts");
    return saveEnvironment(ctx, input.environment, input.output);
  },
  render: (out) =>
    `saved ${out.name} (${out.version}) to ${out.output} (${out.size_bytes} bytes, ${out.digest})`,
});

export const envLoadOp = defineOperation({
  name: "env_load",
  sdk: "loadEnvironment",
  sdkArgs: ["file"],
  output: out.environmentLoaded,
  mutates: false,
  cli: ["env", "load"],
  positionals: ["file"],
  summary: "Install an environment from an archive made by `env save` (every digest verified).",
  description:
    "Install the environment held in an `env save` archive. Every blob and file is checked against its digest; a damaged archive is refused and nothing is installed. An installed environment of the same name and version is replaced.",
  input: v.strictObject({
    file: v.pipe(v.string(), v.minLength(1), v.description("Archive written by `pyro env save`.")),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: [],
  notOverMcp:
    "it installs host artifacts from a host file into the environment store: host administration, for the user.",
  hostPaths: { file: "read" },
  examples: ["pyro env load debian-12.pyroenv.tar"],
  run: async (ctx, input) => {
    const { loadEnvironment } = await import("../env/save.ts");
    const r = await loadEnvironment(ctx, input.file);
    return {
      name: r.installed.manifest.name,
      dir: r.installed.dir,
      digest: r.digest,
      manifest: r.installed.manifest,
    };
  },
  render: (out) => `loaded ${out.name} into ${out.dir} (${out.digest})`,
});

/** Installed environments made by `env create` (not in the catalog), by name. */
function customEnvironments(home: string): InstalledEnvironment[] {
  return installedNames(home)
    .filter((n) => !findRecipe(n))
    .map((n) => findInstalled(home, n))
    .filter((i): i is InstalledEnvironment => i?.manifest.custom === true);
}

/** Environments named by any workspace record (any state: a stopped one boots it again). */
async function environmentsInUse(ctx: Ctx): Promise<Set<string>> {
  const { listWorkspaces } = await import("../manager/workspaces.ts");
  return new Set((await listWorkspaces(ctx)).records.map((r) => r.environment));
}

export const envCreateOp = defineOperation({
  name: "env_create",
  sdk: "createEnvironment",
  sdkArgs: ["name"],
  output: out.environmentInstalled,
  mutates: false,
  cli: ["env", "create"],
  positionals: ["name"],
  summary: "Make a custom environment from an OCI/Docker image (registry or local archive) or a recipe.",
  description:
    "Pull an image (manifest lists resolved to linux/amd64, gzip/zstd layers, whiteouts applied) from a registry, or read an OCI layout / `docker save` archive, build its ext4 root with pyro's init and agent added, and install it under NAME. The image's Env and WorkingDir become command defaults. Layers are cached by digest. Or build a recipe (a JSON file: base environment, packages, files, commands, env) inside a guest of its base, cached by the hash of its inputs.",
  input: v.strictObject({
    name: v.pipe(
      v.string(),
      v.minLength(1),
      v.description("Name of the new environment: [a-z0-9][a-z0-9._:-]{0,62}, not a catalog name."),
    ),
    from_image: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.description("Image reference, e.g. localhost:5000/team/python:3.12."),
      ),
    ),
    from_archive: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.description("Local OCI image layout directory or `docker save` tar."),
      ),
    ),
    recipe: v.optional(
      v.pipe(
        v.string(),
        v.minLength(1),
        v.description(
          "Recipe file (JSON: base, packages, apt_sources, files, commands, env, network) built inside a guest of its base; cached by the hash of its inputs.",
        ),
      ),
    ),
    force: v.optional(v.pipe(v.boolean(), v.description("Replace an existing environment of that name."))),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  profiles: [],
  hostPaths: { from_archive: "read", recipe: "read" },
  notOverMcp:
    "it downloads images into the host's environment store and reads host archives: installing environments is the user's call.",
  examples: [
    "pyro env create team-python --from-image localhost:5000/team/python:3.12",
    "pyro env create jq-env --recipe ./jq.recipe.json",
  ],
  run: async (ctx, input) => {
    if ([input.from_image, input.from_archive, input.recipe].filter((x) => x !== undefined).length !== 1)
      throw new PyroError(
        "INVALID_INPUT",
        "give exactly one of --from-image REF, --from-archive PATH or --recipe FILE",
      );
    if (input.recipe !== undefined) {
      const { createFromRecipe } = await import("../manager/recipe.ts");
      const r = await createFromRecipe(ctx, input.name, input.recipe, { force: input.force ?? false });
      return { name: input.name, dir: r.installed.dir, manifest: r.installed.manifest };
    }
    const { createFromImage } = await import("../env/image/create.ts");
    const inst = await createFromImage(ctx, input.name, {
      image: input.from_image,
      archive: input.from_archive,
      force: input.force ?? false,
    });
    return { name: input.name, dir: inst.dir, manifest: inst.manifest };
  },
  render: (out) => `created ${out.name} in ${out.dir}`,
});

export const envDeleteOp = defineOperation({
  name: "env_delete",
  sdk: "deleteEnvironment",
  sdkArgs: ["environment"],
  output: out.environmentDeleted,
  mutates: false,
  cli: ["env", "delete"],
  positionals: ["environment"],
  summary: "Delete an installed environment; refused while a workspace uses it.",
  description:
    "Remove every installed version of an environment (custom or catalog). Refused with WORKSPACE_BUSY while any workspace (started or stopped) was created from it.",
  input: envName,
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  profiles: [],
  notOverMcp: "it deletes installed environments from the host's store: host administration, for the user.",
  run: async (ctx, input) => {
    const name = input.environment;
    if (installedVersions(ctx.home, name).length === 0)
      throw new PyroError("ENVIRONMENT_NOT_FOUND", `environment ${name} is not installed`, {
        hint: "`pyro env list` shows what is installed",
      });
    const { listWorkspaces } = await import("../manager/workspaces.ts");
    const users = (await listWorkspaces(ctx)).records.filter((r) => r.environment === name);
    if (users.length > 0)
      throw new PyroError("WORKSPACE_BUSY", `environment ${name} is used by ${users.length} workspace(s)`, {
        details: { environment: name, workspaces: users.map((r) => r.workspace_id) },
        hint: `delete them first: ${users.map((r) => `pyro workspace delete ${r.workspace_id}`).join("; ")}`,
      });
    return { name, removed: removeEnvironment(ctx.home, name) };
  },
  render: (out) => `deleted ${out.name}`,
});
