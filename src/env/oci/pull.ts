/**
 * Pull a pyro environment artifact into a directory. Everything happens in a staging dir
 * next to the destination (same filesystem, so the final rename is atomic): each layer is
 * downloaded to `<digest>.partial` (resumed with a Range request after an interruption),
 * its blob digest verified, then decompressed into place while the uncompressed sha256 and
 * size are checked against manifest.json. Only a fully verified staging dir is renamed to
 * the destination, so a failed pull never leaves a half-installed environment. Integrity
 * failures delete the staging dir; transient (network) failures keep it for the next try.
 * Callers serialize pulls into the same destination (the environment lock).
 */
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { PyroError, toPyroError } from "../../protocol/errors.ts";
import {
  type Descriptor,
  type EnvironmentManifest,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  MEDIA_TYPES,
  type OciManifest,
  parseEnvironmentManifest,
  parseLayerMediaType,
  parseOciManifest,
} from "./artifact.ts";
import { RegistryClient, type RegistryOptions, sha256Digest } from "./client.ts";
import { downloadBlob, writeAll } from "./download.ts";
import { Digester, decompress, formatBytes, readChunks, SparseWriter } from "./io.ts";
import { formatReference, parseReference, type Reference } from "./reference.ts";

export interface PullOptions extends RegistryOptions {
  /** Replace an existing non-empty destination (two renames; never half-installed). */
  replace?: boolean;
}

export interface PullResult {
  /** Digest of the OCI manifest that was installed. */
  digest: string;
  /** Normalized reference that was pulled. */
  ref: string;
  /** The installed environment's manifest.json. */
  manifest: EnvironmentManifest;
}

export interface InspectResult extends PullResult {
  oci: OciManifest;
}

type Say = (line: string) => void;

/**
 * The staging dir for pulling artifact `manifestDigest` into `destDir`: a hidden sibling
 * (same filesystem) named by the artifact, not the destination, so an interrupted pull
 * resumes even when the caller picks a fresh destination name each time.
 */
export function pullStagingDir(destDir: string, manifestDigest: string): string {
  return join(
    dirname(resolve(destDir)),
    `${STAGING_PREFIX}${manifestDigest.replace(/^sha256:/, "").slice(0, 32)}`,
  );
}

/** Where the compressed download of layer `blobDigest` lives while in progress. */
export function partialBlobPath(destDir: string, manifestDigest: string, blobDigest: string): string {
  return join(pullStagingDir(destDir, manifestDigest), `${blobDigest.replace(":", "-")}.partial`);
}

const STAGING_PREFIX = ".pyro-pull-";
/** Staging dirs of abandoned pulls are kept this long for a resume, then swept. */
const STAGING_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

async function sweepStaleStaging(parent: string, keep: string): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    const path = join(parent, name);
    if (!name.startsWith(STAGING_PREFIX) || path === keep) continue;
    const info = await stat(path).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > STAGING_MAX_AGE_MS)
      await rm(path, { recursive: true, force: true });
  }
}

/** Fetch and validate the manifest and config of an environment without downloading layers. */
export async function inspectEnvironment(ref: string, opts: RegistryOptions = {}): Promise<InspectResult> {
  const target = parseReference(ref, (opts.env ?? process.env).PYRO_REGISTRY);
  const art = await fetchArtifact(new RegistryClient(target, "pull", opts), target);
  return { digest: art.digest, ref: formatReference(target), manifest: art.env, oci: art.oci };
}

export async function pullEnvironment(
  ref: string,
  destDir: string,
  opts: PullOptions = {},
): Promise<PullResult> {
  const target = parseReference(ref, (opts.env ?? process.env).PYRO_REGISTRY);
  const dest = resolve(destDir);
  const say: Say = opts.onProgress ?? (() => {});
  if (!opts.replace && !(await isAbsentOrEmpty(dest))) {
    throw new PyroError("ALREADY_EXISTS", `${dest} already exists`, {
      details: { path: dest },
      hint: "remove it first or pull with replace",
    });
  }
  const client = new RegistryClient(target, "pull", opts);
  const art = await fetchArtifact(client, target);
  say(`pulling ${art.env.name} ${art.env.version} (${art.digest.slice(0, 19)})`);
  const staging = pullStagingDir(dest, art.digest);
  await sweepStaleStaging(dirname(dest), staging);
  await mkdir(staging, { recursive: true });
  try {
    await installLayer(client, art.kernel, art.env.kernel, staging, "kernel", say, opts.onProgress);
    await installLayer(client, art.rootfs, art.env.rootfs, staging, "rootfs", say, opts.onProgress);
    await writeDurable(join(staging, "manifest.json"), art.config);
    const keep = new Set([art.env.kernel.file, art.env.rootfs.file, "manifest.json"]);
    for (const name of await readdir(staging)) {
      if (!keep.has(name)) await rm(join(staging, name), { recursive: true, force: true });
    }
    await install(staging, dest, opts.replace ?? false);
  } catch (err) {
    const e = toPyroError(err);
    if (e.code === "ENVIRONMENT_CORRUPT" || e.code === "INVALID_INPUT") {
      await rm(staging, { recursive: true, force: true });
    }
    throw e;
  }
  say(`installed ${art.env.name} ${art.env.version} into ${dest}`);
  return { digest: art.digest, ref: formatReference(target), manifest: art.env };
}

interface Artifact {
  digest: string;
  oci: OciManifest;
  kernel: Descriptor;
  rootfs: Descriptor;
  config: Uint8Array;
  env: EnvironmentManifest;
}

async function fetchArtifact(client: RegistryClient, ref: Reference): Promise<Artifact> {
  const where = formatReference(ref);
  const { bytes, contentType } = await client.getManifest(
    [MEDIA_TYPES.manifest, MEDIA_TYPES.index],
    MAX_MANIFEST_BYTES,
  );
  const digest = sha256Digest(bytes);
  if (ref.digest && ref.digest !== digest) {
    throw new PyroError("ENVIRONMENT_CORRUPT", `manifest of ${where} does not match the requested digest`);
  }
  if (contentType && contentType !== MEDIA_TYPES.manifest) {
    throw new PyroError("INVALID_INPUT", `${where} is not a pyro environment (media type ${contentType})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new PyroError("INVALID_INPUT", `manifest of ${where} is not JSON`);
  }
  const { manifest: oci, kernel, rootfs } = parseOciManifest(json, where);
  const config = await client.readBlob(oci.config, MAX_CONFIG_BYTES);
  let envJson: unknown;
  try {
    envJson = JSON.parse(new TextDecoder().decode(config));
  } catch {
    throw new PyroError("ENVIRONMENT_CORRUPT", `config (manifest.json) of ${where} is not JSON`);
  }
  return {
    digest,
    oci,
    kernel,
    rootfs,
    config,
    env: parseEnvironmentManifest(envJson, `config of ${where}`),
  };
}

async function installLayer(
  client: RegistryClient,
  desc: Descriptor,
  entry: EnvironmentManifest["kernel"],
  staging: string,
  kind: string,
  say: Say,
  onProgress?: Say,
): Promise<void> {
  const final = join(staging, entry.file);
  if (await fileMatches(final, entry)) {
    say(`${kind}: already staged`);
    return;
  }
  const partial = join(staging, `${desc.digest.replace(":", "-")}.partial`);
  await downloadBlob(client, desc, partial, kind, say, onProgress);
  await unpackLayer(partial, desc, entry, staging, kind, say);
}

/**
 * Decompress the (digest-verified) layer blob at `partial` into `staging/<entry.file>`,
 * checking the uncompressed size and sha256 against manifest.json; the blob is removed once
 * unpacked or found corrupt. Shared by pull and `env load` (src/env/save.ts).
 */
export async function unpackLayer(
  partial: string,
  desc: Descriptor,
  entry: EnvironmentManifest["kernel"],
  staging: string,
  kind: string,
  say: Say,
): Promise<void> {
  const final = join(staging, entry.file);
  say(`${kind}: unpacking ${entry.file} (${formatBytes(entry.size)})`);
  const compression = parseLayerMediaType(desc.mediaType)!.compression;
  const tmp = `${final}.tmp`;
  const out = await SparseWriter.create(tmp);
  const d = new Digester();
  try {
    for await (const chunk of decompress(readChunks(partial), compression)) {
      d.update(chunk);
      // The config says how big the file is: stop a decompression bomb early.
      if (d.size > entry.size) break;
      await out.write(chunk);
    }
    await out.close();
  } catch (err) {
    await out.abort();
    await rm(tmp, { force: true });
    if ((err as NodeJS.ErrnoException)?.code?.startsWith?.("E")) throw toPyroError(err);
    await rm(partial, { force: true });
    throw new PyroError(
      "ENVIRONMENT_CORRUPT",
      `${kind} layer ${desc.digest} does not decompress (${desc.mediaType})`,
      {
        cause: err,
      },
    );
  }
  if (d.size !== entry.size || d.hex() !== entry.sha256) {
    await rm(tmp, { force: true });
    await rm(partial, { force: true });
    throw new PyroError(
      "ENVIRONMENT_CORRUPT",
      `${entry.file} from ${desc.digest} does not match manifest.json (sha256/size differ)`,
      { details: { file: entry.file, expected: { sha256: entry.sha256, size: entry.size } } },
    );
  }
  await rename(tmp, final);
  await rm(partial, { force: true });
}

export async function writeDurable(path: string, bytes: Uint8Array): Promise<void> {
  const fh = await open(path, "w", 0o644);
  try {
    await writeAll(fh, bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fileMatches(path: string, entry: { sha256: string; size: number }): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile() || info.size !== entry.size) return false;
  const d = new Digester();
  for await (const chunk of readChunks(path)) d.update(chunk);
  return d.hex() === entry.sha256;
}

async function isAbsentOrEmpty(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw toPyroError(err);
  }
}

/** rename(2) is atomic and replaces an empty directory; a full one is swapped aside first. */
export async function install(staging: string, dest: string, replace: boolean): Promise<void> {
  await mkdir(dirname(dest), { recursive: true });
  try {
    await rename(staging, dest);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw toPyroError(err);
  }
  if (!replace) throw new PyroError("ALREADY_EXISTS", `${dest} already exists`, { details: { path: dest } });
  const old = join(dirname(dest), `.${basename(dest)}.old-${process.pid}-${Date.now()}`);
  await rename(dest, old);
  try {
    await rename(staging, dest);
  } catch (err) {
    await rename(old, dest).catch(() => {});
    throw toPyroError(err);
  }
  await rm(old, { recursive: true, force: true });
}
