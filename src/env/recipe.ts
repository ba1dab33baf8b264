/**
 * Recipes (`pyro env create NAME --recipe FILE`): a small declarative JSON file that turns an
 * installed environment into a new one by steps run INSIDE a pyro guest (the build itself is
 * src/manager/recipe.ts; this file is the host side below the manager: the file format, the
 * cache key, the build cache, and installing a finished root tree).
 *
 * Invariants:
 * - The format is one strict valibot schema (RecipeFile): an unknown field, a bad package or
 *   variable name, a destination outside the guest's system directories, or a file source
 *   outside the recipe's directory is INVALID_INPUT naming the field; a missing source is
 *   FILE_NOT_FOUND. Nothing is booted before the recipe has passed.
 * - The cache key is the sha256 of everything that changes the result: the format version,
 *   the normalised recipe, the base environment's kernel and rootfs digests, and the content
 *   (paths, modes, bytes, link targets) of every file copied in. Same key, same inputs: the
 *   build cache's root tree is reused (`<build cache>/recipes/<key>/root.tar`, published by
 *   rename, so a half-written tree is never found) and an environment installed at that key's
 *   version is returned as it is. What the recipe fetches from a network (apt mirrors) is not
 *   part of the key: such a recipe is reproducible only as far as its mirror is.
 * - Installing a root tree goes through the image importer's applyLayer (containment, hard
 *   links, owners as root), resets the per-boot files every pyro root carries, and lands by
 *   one rename like every install; any failure leaves nothing visible.
 */
import {
  copyFileSync,
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import * as v from "valibot";
import type { HostCtx } from "../base/context.ts";
import { buildCacheDir } from "../base/paths.ts";
import { PyroError } from "../protocol/errors.ts";
import { cacheKey, removeStale, scratchPath } from "./build/cache.ts";
import { IMAGE_DIRS, IMAGE_FILES, mkfsFromTree } from "./build/rootfs.ts";
import { applyLayer, ScopedTree } from "./image/apply.ts";
import { discardFailedCreate, publishCustom } from "./image/create.ts";
import { readChunks } from "./oci/io.ts";
import { type EnvironmentManifest, envRoot, fileEntry, type InstalledEnvironment } from "./store.ts";

/** Bump when the way a recipe is built changes (so old cache entries are not reused). */
export const RECIPE_FORMAT = 1;

/** Guest directories a recipe may not write files into: runtime mounts and pyro's own places. */
const FORBIDDEN_DEST = ["proc", "sys", "dev", "run", "tmp", "workspace", "mnt", ".pyro"];

const packageName = v.pipe(
  v.string(),
  v.regex(
    /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$/,
    "a Debian package name (optionally =VERSION), e.g. jq or jq=1.6-2.1",
  ),
);

const destPath = v.pipe(
  v.string(),
  v.check((p) => isAbsolute(p) && !p.split("/").includes(".."), "an absolute guest path without '..'"),
  v.check(
    (p) => {
      const top = p.split("/").filter(Boolean)[0];
      return top !== undefined && !FORBIDDEN_DEST.includes(top);
    },
    `not / and not under /${FORBIDDEN_DEST.join(", /")}`,
  ),
);

export const RecipeFile = v.strictObject({
  base: v.pipe(
    v.string(),
    v.minLength(1),
    v.description("Environment to start from: a catalog name (debian:12) or an installed custom one."),
  ),
  packages: v.optional(
    v.pipe(
      v.array(packageName),
      v.maxLength(500),
      v.description("Debian packages, `apt-get install --no-install-recommends` in the build guest."),
    ),
    [],
  ),
  apt_sources: v.optional(
    v.pipe(
      v.array(v.pipe(v.string(), v.regex(/^deb(-src)? \S.*$/, "an apt source line starting with 'deb '"))),
      v.description("Extra apt source lines (kept in /etc/apt/sources.list.d/pyro-recipe.list)."),
    ),
    [],
  ),
  files: v.optional(
    v.array(
      v.strictObject({
        source: v.pipe(
          v.string(),
          v.minLength(1),
          v.description("Host file or directory, relative to the recipe file's directory."),
        ),
        dest: v.pipe(destPath, v.description("Absolute guest path it is copied to.")),
      }),
    ),
    [],
  ),
  commands: v.optional(
    v.pipe(
      v.array(v.pipe(v.string(), v.minLength(1))),
      v.description("Shell commands run in order by /bin/sh -c as root, after the packages."),
    ),
    [],
  ),
  env: v.optional(
    v.pipe(
      v.record(v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "a variable name")), v.string()),
      v.description("Variables for the build commands and default variables of the new environment."),
    ),
    {},
  ),
  network: v.optional(
    v.pipe(v.boolean(), v.description("Give the build guest network egress (default true).")),
    true,
  ),
});
export type Recipe = v.InferOutput<typeof RecipeFile>;

/** A recipe read from disk: its parsed content, its directory, and its absolute file sources. */
export interface LoadedRecipe {
  path: string;
  recipe: Recipe;
  /** absolute host path of each files[] entry, in order */
  sources: string[];
}

/** Read and check a recipe file (see the header for the codes). */
export function loadRecipe(file: string): LoadedRecipe {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PyroError(
      code === "ENOENT" ? "FILE_NOT_FOUND" : "INVALID_INPUT",
      `recipe ${file}: ${code === "ENOENT" ? "no such file" : (err as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new PyroError("INVALID_INPUT", `recipe ${file} is not JSON: ${(err as Error).message}`);
  }
  const parsed = v.safeParse(RecipeFile, json);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    const field = v.getDotPath(issue) ?? "(root)";
    throw new PyroError("INVALID_INPUT", `recipe ${file}: ${field}: ${issue.message}`, {
      details: { field },
    });
  }
  const dir = dirname(path);
  const sources = parsed.output.files.map((f, i) => {
    const abs = resolve(dir, f.source);
    const rel = relative(dir, abs);
    if (rel.startsWith("..") || isAbsolute(rel))
      throw new PyroError(
        "INVALID_INPUT",
        `recipe ${file}: files.${i}.source leaves the recipe's directory`,
        {
          details: { field: `files.${i}.source` },
        },
      );
    if (!existsSync(abs))
      throw new PyroError("FILE_NOT_FOUND", `recipe ${file}: files.${i}.source ${f.source} does not exist`);
    return abs;
  });
  return { path, recipe: parsed.output, sources };
}

/** sha256 over a host file tree: relative paths, kinds, modes, bytes and link targets, sorted. */
function hashTree(root: string): string {
  const h = new Bun.CryptoHasher("sha256");
  const walk = (p: string, rel: string) => {
    const st = lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) h.update(`L ${rel} ${readlinkSync(p)}\n`);
    else if (st.isDirectory()) {
      h.update(`D ${rel} ${mode}\n`);
      for (const e of readdirSync(p).sort()) walk(join(p, e), rel ? `${rel}/${e}` : e);
    } else if (st.isFile()) {
      h.update(`F ${rel} ${mode} ${st.size}\n`);
      h.update(readFileSync(p));
    } else throw new PyroError("INVALID_INPUT", `recipe file ${p} is not a file, directory or symlink`);
  };
  walk(root, "");
  return h.digest("hex");
}

/** The cache key of a recipe on a base environment (see the header). */
export function recipeKey(loaded: LoadedRecipe, base: EnvironmentManifest): string {
  const r = loaded.recipe;
  const normalised = {
    ...r,
    env: Object.fromEntries(Object.entries(r.env).sort(([a], [b]) => a.localeCompare(b))),
  };
  return cacheKey([
    `recipe-format ${RECIPE_FORMAT}`,
    JSON.stringify(normalised),
    base.kernel.sha256,
    base.rootfs.sha256,
    ...loaded.sources.map(hashTree),
  ]);
}

export const recipeVersion = (key: string) => `rcp-${key.slice(0, 12)}`;

/** The build cache's root tree of a key (present only when complete). */
export function cachedRootTar(env: HostCtx["env"], key: string): string {
  return join(buildCacheDir(env), "recipes", key, "root.tar");
}

/** Publish a finished root tar into the cache (rename; a concurrent equal one may win). */
export async function publishRootTar(env: HostCtx["env"], key: string, tmpTar: string): Promise<string> {
  const final = cachedRootTar(env, key);
  await mkdir(dirname(final), { recursive: true });
  await rename(tmpTar, final);
  return final;
}

/** A scratch file name in the recipes cache for a root tar being received. */
export async function rootTarScratch(env: HostCtx["env"], key: string): Promise<string> {
  const dir = join(buildCacheDir(env), "recipes");
  await mkdir(dir, { recursive: true });
  removeStale(dir);
  return scratchPath(dir, "root", key.slice(0, 12));
}

/**
 * Install `name` from a root tar made by a recipe build: apply it to a staging tree, reset the
 * per-boot files, mkfs, take the base's kernel, write the manifest, publish by rename. The
 * environment inherits the base's agent (it is in the tree) and image defaults, with the
 * recipe's env on top.
 */
export async function installRecipeRoot(
  ctx: HostCtx,
  opts: { name: string; key: string; rootTar: string; loaded: LoadedRecipe; base: InstalledEnvironment },
): Promise<InstalledEnvironment> {
  const { name, key, loaded, base } = opts;
  const say = ctx.progress;
  const stagingRoot = join(buildCacheDir(ctx.env), "staging");
  await mkdir(stagingRoot, { recursive: true });
  removeStale(stagingRoot);
  const treeDir = scratchPath(stagingRoot, "recipe", key.slice(0, 12));
  const installStaging = join(envRoot(ctx.home, name), `.staging-${process.pid}`);
  const version = recipeVersion(key);
  try {
    await mkdir(treeDir, { recursive: true });
    const tree = new ScopedTree(treeDir);
    try {
      const stats = await applyLayer(tree, readChunks(opts.rootTar), "root", (entry, why) =>
        say(`root tree: dropped ${entry} (${why})`),
      );
      say(`root tree: ${stats.entries} entries`);
      for (const dir of [...IMAGE_DIRS, "proc", "sys", "dev", "run", "tmp"])
        tree.resolveDir(dir.split("/"), true, `/${dir}`);
      for (const [path, text] of Object.entries(IMAGE_FILES)) {
        const at = tree.parentOf(path.split("/"), true, `/${path}`)!;
        await tree.writeFile(at.real, at.name, new TextEncoder().encode(text), { mode: 0o644 });
      }
    } finally {
      tree.close();
    }
    rmSync(installStaging, { recursive: true, force: true });
    await mkdir(installStaging, { recursive: true });
    await mkfsFromTree(treeDir, join(installStaging, "rootfs.ext4"), `environment ${name}`, say);
    copyFileSync(join(base.dir, base.manifest.kernel.file), join(installStaging, "vmlinux"));
    say("hashing artifacts");
    const r = loaded.recipe;
    const baseImage = base.manifest.image;
    const envList = [
      ...(baseImage?.env ?? []).filter((kv) => !((kv.split("=")[0] ?? "") in r.env)),
      ...Object.entries(r.env).map(([k, val]) => `${k}=${val}`),
    ];
    const manifest: EnvironmentManifest = {
      name,
      version,
      kernel: await fileEntry(installStaging, "vmlinux"),
      rootfs: await fileEntry(installStaging, "rootfs.ext4"),
      agent_version: base.manifest.agent_version,
      ...(base.manifest.agent_sha256 ? { agent_sha256: base.manifest.agent_sha256 } : {}),
      protocol_version: base.manifest.protocol_version,
      built_at: new Date().toISOString(),
      packages: [...base.manifest.packages, ...r.packages],
      custom: true,
      source: { kind: "recipe", ref: loaded.path, digest: `sha256:${key}` },
      ...(baseImage || envList.length
        ? {
            image: {
              env: envList,
              working_dir: baseImage?.working_dir ?? null,
              user: baseImage?.user ?? null,
              entrypoint: baseImage?.entrypoint ?? [],
              cmd: baseImage?.cmd ?? [],
            },
          }
        : {}),
    };
    const installed = await publishCustom(ctx.home, installStaging, manifest);
    say(`created ${name} (${version}) from recipe ${loaded.path}`);
    return installed;
  } catch (err) {
    discardFailedCreate(ctx.home, name, installStaging);
    throw err;
  } finally {
    await rm(treeDir, { recursive: true, force: true });
  }
}
