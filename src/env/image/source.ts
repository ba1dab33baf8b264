/**
 * Where an image comes from: a registry (`--from-image REF`, pulled with the OCI client and
 * its auth, src/env/oci) or a local archive (`--from-archive PATH`: an OCI image layout
 * directory, or a tar of one or of `docker save`'s format). Either way the result is the
 * image config (platform checked: linux/amd64 only) and its layers, each a file in the
 * layer cache.
 *
 * Layer cache: `<build cache>/layers/sha256-<hex>`, one file per blob digest, shared by every
 * environment built on this host. A file appears there only by rename after its bytes
 * matched the digest, so a cached layer is trusted as is. Manifests and configs are small
 * and verified in memory. Uncompressed layers are verified later, while they are applied,
 * against the config's diff_ids.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { copyFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { unpackTar } from "../../protocol/archive/unpack.ts";
import { PyroError } from "../../protocol/errors.ts";
import { scratchPath } from "../build/cache.ts";
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES } from "../oci/artifact.ts";
import type { Env } from "../oci/auth.ts";
import { RegistryClient, sha256Digest } from "../oci/client.ts";
import { downloadBlob } from "../oci/download.ts";
import { Digester, readChunks } from "../oci/io.ts";
import { formatReference, parseReference } from "../oci/reference.ts";

type Say = (line: string) => void;

export const MEDIA = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
} as const;
const INDEXES = new Set<string>([MEDIA.ociIndex, MEDIA.dockerList]);
export const WANTED_PLATFORM = "linux/amd64";

const DIGEST = v.pipe(v.string(), v.regex(/^sha256:[a-f0-9]{64}$/));
const Descriptor = v.looseObject({
  mediaType: v.optional(v.string()),
  digest: DIGEST,
  size: v.pipe(v.number(), v.integer(), v.minValue(0)),
  platform: v.optional(
    v.looseObject({ architecture: v.string(), os: v.string(), variant: v.optional(v.string()) }),
  ),
  annotations: v.optional(v.record(v.string(), v.string())),
});
type Descriptor = v.InferOutput<typeof Descriptor>;
const Index = v.looseObject({ mediaType: v.optional(v.string()), manifests: v.array(Descriptor) });
const Manifest = v.looseObject({
  mediaType: v.optional(v.string()),
  config: Descriptor,
  layers: v.array(Descriptor),
});
const strings = v.optional(v.nullable(v.array(v.string())));
export const ImageConfig = v.looseObject({
  architecture: v.optional(v.string()),
  os: v.optional(v.string()),
  config: v.optional(
    v.nullable(
      v.looseObject({
        Env: strings,
        WorkingDir: v.optional(v.nullable(v.string())),
        User: v.optional(v.nullable(v.string())),
        Entrypoint: strings,
        Cmd: strings,
      }),
    ),
  ),
  rootfs: v.looseObject({ type: v.string(), diff_ids: v.array(DIGEST) }),
});
export type ImageConfig = v.InferOutput<typeof ImageConfig>;

export interface ResolvedImage {
  /** what the user named (normalised reference, or the archive path) */
  ref: string;
  /** digest of the image manifest that was used */
  digest: string;
  config: ImageConfig;
  /** cached layer blobs, base first */
  layers: string[];
}

export const layerCacheDir = (cacheDir: string) => join(cacheDir, "layers");
const cachedLayer = (cacheDir: string, digest: string) =>
  join(layerCacheDir(cacheDir), digest.replace(":", "-"));

function parseJson<T extends v.GenericSchema>(schema: T, bytes: Uint8Array, what: string): v.InferOutput<T> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new PyroError("ENVIRONMENT_CORRUPT", `${what} is not JSON`);
  }
  const r = v.safeParse(schema, json);
  if (!r.success)
    throw new PyroError(
      "ENVIRONMENT_CORRUPT",
      `${what} is not a valid image document: ${v.summarize(r.issues).replaceAll("\n", "; ")}`,
    );
  return r.output;
}

const isIndex = (doc: { mediaType?: string; manifests?: unknown }, contentType = "") =>
  INDEXES.has(contentType) || INDEXES.has(doc.mediaType ?? "") || Array.isArray(doc.manifests);

function wrongPlatform(where: string, found: string[]): PyroError {
  return new PyroError(
    "INVALID_INPUT",
    `${where} has no ${WANTED_PLATFORM} image (found: ${found.join(", ") || "none"}); pyro guests are x86_64 Linux`,
    { details: { reason: "platform", wanted: WANTED_PLATFORM, found } },
  );
}

/** The linux/amd64 entry of an index (an entry without a platform counts as a candidate). */
function pickPlatform(index: v.InferOutput<typeof Index>, where: string): Descriptor {
  const found = index.manifests.map((m) =>
    m.platform ? `${m.platform.os}/${m.platform.architecture}` : "unknown",
  );
  const pick =
    index.manifests.find((m) => m.platform?.os === "linux" && m.platform.architecture === "amd64") ??
    index.manifests.find((m) => !m.platform && !m.annotations?.["vnd.docker.reference.type"]);
  if (!pick) throw wrongPlatform(where, found);
  return pick;
}

function checkConfigPlatform(config: ImageConfig, where: string): void {
  const os = config.os ?? "linux";
  const arch = config.architecture ?? "amd64";
  if (os !== "linux" || arch !== "amd64") throw wrongPlatform(where, [`${os}/${arch}`]);
}

/** Pull manifest (through an index), config and layers of `ref` from its registry. */
export async function resolveFromRegistry(
  input: string,
  cacheDir: string,
  opts: { env: Env; say: Say },
): Promise<ResolvedImage> {
  const target = parseReference(input, opts.env.PYRO_REGISTRY);
  const where = formatReference(target);
  const accept = [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest, MEDIA.dockerList];
  const clientOpts = { env: opts.env, onProgress: opts.say };
  let client = new RegistryClient(target, "pull", clientOpts);
  let got = await client.getManifest(accept, MAX_MANIFEST_BYTES).catch((err) => {
    if (err instanceof PyroError && err.code === "ENVIRONMENT_NOT_FOUND")
      throw new PyroError("ENVIRONMENT_NOT_FOUND", `image ${where} not found: ${err.message}`, {
        details: err.details,
        hint: "check the reference (registry/repository:tag); pyro assumes no default registry such as docker.io",
      });
    throw err;
  });
  let digest = sha256Digest(got.bytes);
  if (target.digest && target.digest !== digest)
    throw new PyroError("ENVIRONMENT_CORRUPT", `manifest of ${where} does not match the requested digest`);
  let doc = parseJson(
    v.looseObject({ mediaType: v.optional(v.string()), manifests: v.optional(v.unknown()) }),
    got.bytes,
    `manifest of ${where}`,
  );
  if (isIndex(doc, got.contentType)) {
    const pick = pickPlatform(parseJson(Index, got.bytes, `index of ${where}`), where);
    client = new RegistryClient({ ...target, digest: pick.digest }, "pull", clientOpts);
    got = await client.getManifest(accept, MAX_MANIFEST_BYTES);
    digest = sha256Digest(got.bytes);
    if (digest !== pick.digest)
      throw new PyroError(
        "ENVIRONMENT_CORRUPT",
        `manifest ${pick.digest} of ${where} does not match its digest`,
      );
    doc = parseJson(
      v.looseObject({ mediaType: v.optional(v.string()), manifests: v.optional(v.unknown()) }),
      got.bytes,
      `manifest of ${where}`,
    );
    if (isIndex(doc))
      throw new PyroError("INVALID_INPUT", `${where}: nested image indexes are not supported`);
  }
  const manifest = parseJson(Manifest, got.bytes, `manifest of ${where}`);
  const config = parseJson(
    ImageConfig,
    await client.readBlob(manifest.config, MAX_CONFIG_BYTES),
    `config of ${where}`,
  );
  checkConfigPlatform(config, where);
  checkLayerCount(config, manifest.layers.length, where);
  mkdirSync(layerCacheDir(cacheDir), { recursive: true });
  const layers: string[] = [];
  for (const [i, desc] of manifest.layers.entries()) {
    const final = cachedLayer(cacheDir, desc.digest);
    const kind = `layer ${i + 1}/${manifest.layers.length}`;
    if (existsSync(final)) {
      opts.say(`${kind}: cached (${desc.digest.slice(0, 19)})`);
    } else {
      const partial = `${final}.partial`;
      await downloadBlob(client, { ...desc, mediaType: desc.mediaType ?? "" }, partial, kind, opts.say);
      await rename(partial, final);
    }
    layers.push(final);
  }
  return { ref: where, digest, config, layers };
}

function checkLayerCount(config: ImageConfig, layers: number, where: string): void {
  if (config.rootfs.diff_ids.length !== layers)
    throw new PyroError(
      "ENVIRONMENT_CORRUPT",
      `${where}: the manifest lists ${layers} layers but the config ${config.rootfs.diff_ids.length}`,
    );
}

/** Copy (or move) a file into the layer cache after checking its digest (if one is expected). */
async function ingestLayer(
  cacheDir: string,
  src: string,
  expect: string | undefined,
  move: boolean,
  where: string,
): Promise<string> {
  const d = new Digester();
  for await (const chunk of readChunks(src)) d.update(chunk);
  const digest = `sha256:${d.hex()}`;
  if (expect && digest !== expect)
    throw new PyroError(
      "ENVIRONMENT_CORRUPT",
      `${where}: blob ${expect} does not match its digest (got ${digest})`,
      {
        details: { digest: expect },
      },
    );
  mkdirSync(layerCacheDir(cacheDir), { recursive: true });
  const final = cachedLayer(cacheDir, digest);
  if (existsSync(final)) return final;
  const tmp = `${final}.tmp-${process.pid}`;
  if (move) await rename(src, tmp);
  else await copyFile(src, tmp);
  await rename(tmp, final);
  return final;
}

/** A blob of an OCI layout, read whole and verified (manifests, configs). */
function layoutBlob(dir: string, desc: Descriptor, limit: number, where: string): Uint8Array {
  const path = blobPath(dir, desc.digest);
  if (!existsSync(path))
    throw new PyroError("ENVIRONMENT_CORRUPT", `${where}: blob ${desc.digest} is missing`);
  if (statSync(path).size > limit)
    throw new PyroError("ENVIRONMENT_CORRUPT", `${where}: blob ${desc.digest} is too large`);
  const bytes = new Uint8Array(readFileSync(path));
  if (sha256Digest(bytes) !== desc.digest)
    throw new PyroError("ENVIRONMENT_CORRUPT", `${where}: blob ${desc.digest} does not match its digest`, {
      details: { digest: desc.digest },
    });
  return bytes;
}
const blobPath = (dir: string, digest: string) => join(dir, "blobs", ...digest.split(":"));

async function resolveLayout(
  dir: string,
  cacheDir: string,
  where: string,
  move: boolean,
): Promise<ResolvedImage> {
  let index = parseJson(Index, new Uint8Array(readFileSync(join(dir, "index.json"))), `${where}: index.json`);
  for (let depth = 0; ; depth++) {
    const pick = pickPlatform(index, where);
    const bytes = layoutBlob(dir, pick, MAX_MANIFEST_BYTES, where);
    const doc = parseJson(
      v.looseObject({ mediaType: v.optional(v.string()), manifests: v.optional(v.unknown()) }),
      bytes,
      `${where}: manifest`,
    );
    if (isIndex(doc, pick.mediaType)) {
      if (depth > 2) throw new PyroError("INVALID_INPUT", `${where}: image indexes nested too deep`);
      index = parseJson(Index, bytes, `${where}: index`);
      continue;
    }
    const manifest = parseJson(Manifest, bytes, `${where}: manifest`);
    const config = parseJson(
      ImageConfig,
      layoutBlob(dir, manifest.config, MAX_CONFIG_BYTES, where),
      `${where}: config`,
    );
    checkConfigPlatform(config, where);
    checkLayerCount(config, manifest.layers.length, where);
    const layers: string[] = [];
    for (const desc of manifest.layers) {
      const path = blobPath(dir, desc.digest);
      if (!existsSync(path))
        throw new PyroError("ENVIRONMENT_CORRUPT", `${where}: layer ${desc.digest} is missing`);
      layers.push(await ingestLayer(cacheDir, path, desc.digest, move, where));
    }
    return { ref: where, digest: pick.digest, config, layers };
  }
}

const DockerSave = v.array(
  v.looseObject({
    Config: v.string(),
    RepoTags: v.optional(v.nullable(v.array(v.string()))),
    Layers: v.array(v.string()),
  }),
);

/** Names inside a `docker save` tar: relative, no "..": they were extracted safely anyway. */
function inside(root: string, name: string, where: string): string {
  if (name.startsWith("/") || name.split("/").includes(".."))
    throw new PyroError("INVALID_INPUT", `${where}: manifest.json names a file outside the archive: ${name}`);
  const p = join(root, name);
  if (!existsSync(p)) throw new PyroError("ENVIRONMENT_CORRUPT", `${where}: ${name} is missing`);
  return p;
}

/**
 * A local archive: an OCI layout directory, or a tar holding one (`docker save` of Docker
 * 25 and later writes both) or the older `docker save` format (manifest.json + layer tars).
 */
export async function resolveFromArchive(path: string, cacheDir: string, say: Say): Promise<ResolvedImage> {
  const where = `archive ${path}`;
  if (!existsSync(path)) throw new PyroError("FILE_NOT_FOUND", `${where} does not exist`);
  if (statSync(path).isDirectory()) {
    if (!existsSync(join(path, "index.json")))
      throw new PyroError("INVALID_INPUT", `${where} is not an OCI image layout (no index.json)`);
    return resolveLayout(path, cacheDir, where, false);
  }
  mkdirSync(cacheDir, { recursive: true });
  const scratch = scratchPath(cacheDir, "archive", "x");
  mkdirSync(scratch, { recursive: true });
  try {
    say(`${where}: unpacking`);
    await unpackTar(readChunks(path), scratch);
    if (existsSync(join(scratch, "index.json")) && existsSync(join(scratch, "blobs")))
      return await resolveLayout(scratch, cacheDir, where, true);
    if (!existsSync(join(scratch, "manifest.json")))
      throw new PyroError("INVALID_INPUT", `${where} is neither an OCI layout nor a docker save archive`);
    const entries = parseJson(
      DockerSave,
      new Uint8Array(readFileSync(join(scratch, "manifest.json"))),
      `${where}: manifest.json`,
    );
    if (entries.length !== 1)
      throw new PyroError("INVALID_INPUT", `${where} holds ${entries.length} images; save exactly one`);
    const entry = entries[0]!;
    const configBytes = new Uint8Array(readFileSync(inside(scratch, entry.Config, where)));
    // Legacy docker save names the config by its digest: hold it to that.
    const named =
      /([a-f0-9]{64})\.json$/.exec(entry.Config)?.[1] ?? /sha256\/([a-f0-9]{64})$/.exec(entry.Config)?.[1];
    if (named && sha256Digest(configBytes) !== `sha256:${named}`)
      throw new PyroError(
        "ENVIRONMENT_CORRUPT",
        `${where}: config ${entry.Config} does not match its digest`,
      );
    const config = parseJson(ImageConfig, configBytes, `${where}: config`);
    checkConfigPlatform(config, where);
    checkLayerCount(config, entry.Layers.length, where);
    const layers: string[] = [];
    for (const name of entry.Layers)
      layers.push(await ingestLayer(cacheDir, inside(scratch, name, where), undefined, true, where));
    return { ref: where, digest: sha256Digest(configBytes), config, layers };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
