/**
 * Building a recipe (`pyro env create NAME --recipe FILE`) inside a pyro guest, so the host
 * needs no root and runs nothing of the recipe's: the format, cache key and install are
 * src/env/recipe.ts; this is the part that needs workspaces.
 *
 * Steps: check the recipe; make sure the base is installed; compute the key. An environment
 * NAME already installed at the key's version is the answer (cache hit, nothing boots); a
 * root tree in the build cache under the key is installed without booting (cache hit); else a
 * build workspace `pyro-recipe-<key>` of the base (network egress unless the recipe says
 * `network: false`) runs, in order: files copied in (uploaded under /workspace, then `cp -a`
 * to their destinations), apt sources, `apt-get update && apt-get install`, the commands;
 * then GNU tar packs the guest's root (one file system: the runtime mounts stay out;
 * /workspace's content stays out) into /workspace, and the agent's export streams it to the
 * host, where the inner tar is written to the cache. The workspace is deleted whatever
 * happens. A step that fails is ENVIRONMENT_BUILD_FAILED naming the step, with its exit code
 * and output tail; nothing is installed and nothing is cached.
 *
 * The build workspace shows in `workspace list` while it runs (labelled pyro.recipe=<key>),
 * counts against the active-VM limit, and has a 3 hour TTL as a backstop.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cp, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { checkCustomName } from "../env/image/create.ts";
import { ensureEnvironment } from "../env/prepare.ts";
import {
  cachedRootTar,
  installRecipeRoot,
  type LoadedRecipe,
  loadRecipe,
  publishRootTar,
  recipeKey,
  recipeVersion,
  rootTarScratch,
} from "../env/recipe.ts";
import { findInstalled, type InstalledEnvironment, verifyEnvironment } from "../env/store.ts";
import { readTar } from "../protocol/archive/tar.ts";
import { PyroError } from "../protocol/errors.ts";
import { AsyncQueue } from "../protocol/queue.ts";
import type { Ctx } from "./context.ts";
import type { WorkspaceRecord } from "./record.ts";
import { exportStream, hostFileWriter, importIntoWorkspace } from "./transfer.ts";
import { createWorkspace, deleteWorkspace, execWorkspace } from "./workspaces.ts";

/** Each build step may take this long (apt over a slow mirror under TCG). */
const STEP_TIMEOUT_SECONDS = 3600;
const STAGE = "/workspace/.pyro-recipe";
const ROOT_TAR = "/workspace/.pyro-root.tar";

export interface RecipeResult {
  installed: InstalledEnvironment;
  /** "installed": the environment was already there; "tree": the cached root tree was used */
  cache: "installed" | "tree" | "miss";
}

export async function createFromRecipe(
  ctx: Ctx,
  name: string,
  file: string,
  opts: { force?: boolean } = {},
): Promise<RecipeResult> {
  checkCustomName(ctx.home, name);
  const loaded = loadRecipe(file);
  const base = await ensureEnvironment(ctx, loaded.recipe.base, { allowMissing: false });
  if (!base)
    throw new PyroError("ENVIRONMENT_NOT_FOUND", `base environment ${loaded.recipe.base} is missing`);
  const key = recipeKey(loaded, base.manifest);
  const existing = findInstalled(ctx.home, name);
  if (existing && existing.manifest.version === recipeVersion(key) && !opts.force) {
    await verifyEnvironment(existing);
    ctx.progress(`recipe cache hit: ${name} is installed at ${existing.manifest.version}`);
    return { installed: existing, cache: "installed" };
  }
  if (existing && !opts.force)
    throw new PyroError("ALREADY_EXISTS", `environment ${name} already exists (from other inputs)`, {
      hint: `replace it with --force, or \`pyro env delete ${name}\` first`,
    });
  let rootTar = cachedRootTar(ctx.env, key);
  let cache: RecipeResult["cache"] = "tree";
  if (await Bun.file(rootTar).exists()) ctx.progress(`recipe cache hit: root tree ${key.slice(0, 12)}`);
  else {
    cache = "miss";
    rootTar = await buildInGuest(ctx, loaded, key);
  }
  const installed = await installRecipeRoot(ctx, { name, key, rootTar, loaded, base });
  return { installed, cache };
}

/** Run the recipe in a build workspace of its base; the root tree lands in the build cache. */
async function buildInGuest(ctx: Ctx, loaded: LoadedRecipe, key: string): Promise<string> {
  const r = loaded.recipe;
  const say = ctx.progress;
  say(`recipe ${key.slice(0, 12)}: booting a build machine of ${r.base}`);
  const ws = await createWorkspace(ctx, {
    environment: r.base,
    name: `pyro-recipe-${key.slice(0, 12)}`,
    labels: { "pyro.recipe": key.slice(0, 12) },
    network_policy: r.network ? "egress" : "off",
    ttl_seconds: 3 * 3600,
  });
  const id = ws.workspace_id;
  try {
    const total =
      (r.files.length > 0 ? 1 : 0) +
      (r.apt_sources.length > 0 ? 1 : 0) +
      (r.packages.length > 0 ? 1 : 0) +
      r.commands.length +
      1;
    let done = 0;
    const step = async (what: string, command: string[], env: Record<string, string> = {}) => {
      say(`recipe step ${done + 1}/${total}: ${what}`, { step: "recipe steps", done, total, unit: "steps" });
      const res = await execWorkspace(ctx, id, {
        command,
        env: { ...r.env, ...env },
        timeout_seconds: STEP_TIMEOUT_SECONDS,
      });
      if (res.exit_code !== 0)
        throw new PyroError(
          "ENVIRONMENT_BUILD_FAILED",
          `recipe step "${what}" failed with exit code ${res.exit_code}${res.timed_out ? " (timed out)" : ""}`,
          {
            details: {
              step: what,
              exit_code: res.exit_code,
              stdout_tail: res.stdout.slice(-2000),
              stderr_tail: res.stderr.slice(-2000),
            },
            hint: res.stderr.trim().split("\n").slice(-3).join("\n") || undefined,
          },
        );
      done += 1;
      if (done === total) say("recipe steps done", { step: "recipe steps", done, total, unit: "steps" });
    };
    if (r.files.length > 0) {
      // Lay the files out by destination in a host staging dir, upload it, copy it over /.
      const stage = mkdtempSync(join(ctx.home, ".recipe-files-"));
      try {
        for (const [i, f] of r.files.entries()) {
          const dest = join(stage, f.dest);
          await mkdir(join(dest, ".."), { recursive: true });
          await cp(loaded.sources[i] as string, dest, { recursive: true, verbatimSymlinks: true });
        }
        say(`recipe: uploading ${r.files.length} file entr${r.files.length === 1 ? "y" : "ies"}`);
        await importIntoWorkspace(ctx.home, ws, stage, STAGE);
      } finally {
        rmSync(stage, { recursive: true, force: true });
      }
      await step("copy files", ["sh", "-c", `cp -a ${STAGE}/. / && rm -rf ${STAGE}`]);
    }
    if (r.apt_sources.length > 0)
      await step(
        "apt sources",
        ["sh", "-c", 'printf "%s\\n" "$PYRO_APT_SOURCES" > /etc/apt/sources.list.d/pyro-recipe.list'],
        { PYRO_APT_SOURCES: r.apt_sources.join("\n") },
      );
    if (r.packages.length > 0)
      await step(`apt-get install ${r.packages.join(" ")}`, [
        "sh",
        "-c",
        'apt-get update -q >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" && apt-get clean && rm -rf /var/lib/apt/lists/*',
        "sh",
        ...r.packages,
      ]);
    for (const [i, c] of r.commands.entries()) await step(`command ${i + 1}: ${c}`, ["sh", "-c", c]);
    await step("pack the root tree", [
      "tar",
      "--create",
      `--file=${ROOT_TAR}`,
      "--one-file-system",
      "--numeric-owner",
      "--exclude=./workspace/*",
      "-C",
      "/",
      ".",
    ]);
    say("recipe: copying the root tree to the build cache");
    const tmp = await rootTarScratch(ctx.env, key);
    try {
      await receiveInnerTar(ctx, ws, tmp);
      return await publishRootTar(ctx.env, key, tmp);
    } finally {
      rmSync(tmp, { force: true });
    }
  } finally {
    await deleteWorkspace(ctx, id).catch((err) =>
      say(`recipe: could not delete build workspace ${id}: ${(err as Error).message}`),
    );
  }
}

/** Export ROOT_TAR (the agent wraps it in a tar of one file) and write the file's bytes to `out`. */
async function receiveInnerTar(ctx: Ctx, r: WorkspaceRecord, out: string): Promise<void> {
  const q = new AsyncQueue<Uint8Array>();
  const writing = (async () => {
    const writer = hostFileWriter(out);
    let found = false;
    try {
      for await (const entry of readTar(q)) {
        if (found || entry.type !== "file")
          throw new PyroError("INTERNAL", `unexpected entry ${entry.path} in the root tree export`);
        found = true;
        for await (const chunk of entry.body) writer.write(chunk);
      }
    } finally {
      writer.close();
    }
    if (!found) throw new PyroError("INTERNAL", "the root tree export was empty");
  })();
  writing.catch(() => {});
  try {
    await exportStream(ctx.home, r, ROOT_TAR, (c) => q.push(c));
    q.end();
  } catch (err) {
    q.fail(err);
    throw err;
  }
  await writing;
}
