/**
 * Push an installed environment directory as a pyro OCI artifact. Pass 1 reads each file
 * once, verifying the sha256 recorded in manifest.json (a corrupt environment is refused
 * before anything is sent) and computing the compressed digest, so blobs the registry
 * already has are skipped by a HEAD. Pass 2 recompresses only the missing blobs and uploads
 * them in bounded chunks; compression is deterministic for the same input chunking, and the
 * digest is re-checked before the upload is committed.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { PyroError } from "../../protocol/errors.ts";
import {
  buildOciManifest,
  type Compression,
  type EnvironmentManifest,
  type LayerInput,
  type LayerKind,
  MAX_CONFIG_BYTES,
  MEDIA_TYPES,
  parseEnvironmentManifest,
} from "./artifact.ts";
import { RegistryClient, type RegistryOptions, sha256Digest } from "./client.ts";
import { compress, Digester, formatBytes, progressReporter, readChunks } from "./io.ts";
import { formatReference, parseReference } from "./reference.ts";

export interface PushOptions extends RegistryOptions {
  /** Layer compression (default zstd; pull understands none, gzip and zstd). */
  compression?: Compression;
  /** Upload chunk size in bytes: the most memory one upload holds (default 8 MiB). */
  chunkSize?: number;
}

export interface PushResult {
  /** Digest of the pushed OCI manifest: pin with `<ref>@<digest>`. */
  digest: string;
  /** The normalized reference that was pushed (`registry/repo:tag`). */
  ref: string;
}

export interface ScannedLayer extends LayerInput {
  path: string;
}

export async function pushEnvironment(dir: string, ref: string, opts: PushOptions = {}): Promise<PushResult> {
  const env = opts.env ?? process.env;
  const target = parseReference(ref, env.PYRO_REGISTRY);
  if (target.digest) {
    throw new PyroError(
      "INVALID_INPUT",
      "push to a tag, not a digest: the digest is computed from what is pushed",
    );
  }
  const compression = opts.compression ?? "zstd";
  const say = opts.onProgress ?? (() => {});
  const { bytes: configBytes, manifest } = await readLocalManifest(dir);

  // Pass 1: verify and digest everything before touching the network.
  const layers: ScannedLayer[] = [];
  for (const kind of ["kernel", "rootfs"] as const) {
    say(`${kind}: verifying ${manifest[kind].file}`);
    layers.push(await scanLayer(dir, kind, manifest, compression, opts.onProgress));
  }

  const client = new RegistryClient(target, "push", opts);
  const config = { digest: sha256Digest(configBytes), size: configBytes.byteLength };
  const chunkSize = opts.chunkSize ?? 8 << 20;
  if (await client.blobExists(config.digest)) say("config: already in registry");
  else await uploadChunks(client, config.digest, configBytes.byteLength, once(configBytes), chunkSize);
  for (const layer of layers) {
    if (await client.blobExists(layer.digest)) {
      say(`${layer.kind}: already in registry (${layer.digest.slice(0, 19)})`);
      continue;
    }
    say(`${layer.kind}: uploading ${formatBytes(layer.size)} (${compression})`);
    const again = new Digester();
    const source = tee(compress(readChunks(layer.path), compression), again);
    const progress = progressReporter(opts.onProgress, `${layer.kind}: uploaded`, layer.size);
    await uploadChunks(client, layer.digest, layer.size, source, chunkSize, progress, () => {
      if (`sha256:${again.hex()}` !== layer.digest) {
        throw new PyroError("ENVIRONMENT_CORRUPT", `${layer.file} changed while it was being pushed`, {
          details: { file: join(dir, layer.file) },
        });
      }
    });
  }

  const oci = buildOciManifest(manifest, config, layers);
  const bytes = new TextEncoder().encode(JSON.stringify(oci));
  await client.putManifest(bytes, MEDIA_TYPES.manifest);
  const digest = sha256Digest(bytes);
  say(`pushed ${formatReference(target)}@${digest}`);
  return { digest, ref: formatReference(target) };
}

export async function readLocalManifest(
  dir: string,
): Promise<{ bytes: Uint8Array; manifest: EnvironmentManifest }> {
  const path = join(dir, "manifest.json");
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) {
    throw new PyroError("ENVIRONMENT_NOT_FOUND", `no environment at ${dir} (manifest.json missing)`, {
      details: { path: dir },
    });
  }
  if (info.size > MAX_CONFIG_BYTES) throw new PyroError("ENVIRONMENT_CORRUPT", `${path} is too large`);
  const bytes = new Uint8Array(await Bun.file(path).arrayBuffer());
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new PyroError("ENVIRONMENT_CORRUPT", `${path} is not valid JSON`, { details: { path } });
  }
  return { bytes, manifest: parseEnvironmentManifest(json, path) };
}

/** Hash the uncompressed file (must match manifest.json) and the compressed stream. */
export async function scanLayer(
  dir: string,
  kind: LayerKind,
  manifest: EnvironmentManifest,
  compression: Compression,
  onProgress?: (line: string) => void,
): Promise<ScannedLayer> {
  const entry = manifest[kind];
  const path = join(dir, entry.file);
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) {
    throw new PyroError("ENVIRONMENT_CORRUPT", `${entry.file} is missing from ${dir}`, { details: { path } });
  }
  const raw = new Digester();
  const packed = new Digester();
  const progress = progressReporter(onProgress, `${kind}: verified`, info.size);
  const source = tee(readChunks(path), raw, () => progress(raw.size));
  for await (const chunk of compress(source, compression)) packed.update(chunk);
  const sha256 = raw.hex();
  if (raw.size !== entry.size || sha256 !== entry.sha256) {
    throw new PyroError(
      "ENVIRONMENT_CORRUPT",
      `${entry.file} does not match manifest.json (sha256 ${sha256.slice(0, 12)}…, ${raw.size} bytes; expected ${entry.sha256.slice(0, 12)}…, ${entry.size} bytes)`,
      {
        details: {
          path,
          expected: { sha256: entry.sha256, size: entry.size },
          actual: { sha256, size: raw.size },
        },
      },
    );
  }
  return { kind, compression, digest: `sha256:${packed.hex()}`, size: packed.size, file: entry.file, path };
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

export async function* tee(
  src: AsyncIterable<Uint8Array>,
  d: Digester,
  after?: () => void,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of src) {
    d.update(chunk);
    after?.();
    yield chunk;
  }
}

/**
 * Upload a blob of known digest and size: one PUT when it fits in a chunk (monolithic),
 * else PATCH chunk by chunk and a closing PUT. `verify` runs before the commit so a blob
 * whose bytes changed is abandoned instead of stored under a wrong name.
 */
async function uploadChunks(
  client: RegistryClient,
  digest: string,
  size: number,
  source: AsyncIterable<Uint8Array>,
  chunkSize: number,
  progress?: (done: number) => void,
  verify?: () => void,
): Promise<void> {
  let session = await client.startUpload();
  try {
    let buf = new Uint8Array(Math.min(chunkSize, Math.max(size, 1)));
    let used = 0;
    let offset = 0;
    const sendChunk = async () => {
      session = await client.patchUpload(session, buf.subarray(0, used), offset);
      offset += used;
      progress?.(offset);
      buf = new Uint8Array(chunkSize); // the previous body may still be referenced by fetch
      used = 0;
    };
    for await (const chunk of source) {
      let off = 0;
      while (off < chunk.byteLength) {
        // Flush lazily, so the last chunk is still in hand for verify() and the closing PUT.
        if (used === buf.length) {
          if (offset + used >= size) break;
          await sendChunk();
        }
        const n = Math.min(buf.length - used, chunk.byteLength - off);
        buf.set(chunk.subarray(off, off + n), used);
        used += n;
        off += n;
      }
      if (off < chunk.byteLength) {
        throw new PyroError("ENVIRONMENT_CORRUPT", `blob ${digest} grew while it was being pushed`);
      }
    }
    if (offset + used !== size) {
      throw new PyroError("ENVIRONMENT_CORRUPT", `blob ${digest} changed size while it was being pushed`);
    }
    verify?.();
    if (offset === 0) await client.finishUpload(session, digest, buf.subarray(0, used));
    else {
      if (used > 0) await sendChunk();
      await client.finishUpload(session, digest);
    }
    progress?.(size);
  } catch (err) {
    await client.cancelUpload(session);
    throw err;
  }
}
