/**
 * `pyro env save` / `pyro env load`: an installed environment as one file, for machines (CI
 * images) that cannot reach a registry. The file is a tar of an OCI image layout
 * (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) holding exactly the artifact `env push`
 * sends (src/env/oci/artifact.ts): manifest.json as the config blob, zstd kernel and rootfs
 * layers. docs/ci.md documents it.
 *
 * Invariants:
 * - save reads each file twice (pass 1 verifies it against manifest.json and digests the
 *   compressed stream, pass 2 recompresses into the archive and re-checks the digest), so
 *   a corrupt environment is never saved and the output appears by one rename, complete.
 * - load spools every blob into a staging dir under $PYRO_HOME/environments (same filesystem
 *   as the destination), checking each blob's sha256 against its name as it is written, then
 *   unpacks the layers checking manifest.json's sha256/size (the code pull uses), and only
 *   then renames the version dir into place. Any failure removes the staging dir: nothing is
 *   half-installed. An archive is untrusted input: entry names are matched against the
 *   three layout shapes, nothing is ever written at a path taken from the archive.
 */
import { mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { HostCtx } from "../base/context.ts";
import { environmentsDir } from "../base/paths.ts";
import { readTar, type TarWriteEntry, writeTar } from "../protocol/archive/index.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";
import {
  buildOciManifest,
  type Descriptor,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  MEDIA_TYPES,
  parseEnvironmentManifest,
  parseOciManifest,
} from "./oci/artifact.ts";
import { sha256Digest } from "./oci/client.ts";
import { writeAll } from "./oci/download.ts";
import { compress, Digester, formatBytes, readChunks } from "./oci/io.ts";
import { install, unpackLayer, writeDurable } from "./oci/pull.ts";
import { readLocalManifest, type ScannedLayer, scanLayer, tee } from "./oci/push.ts";
import {
  envVersionDir,
  findInstalled,
  type InstalledEnvironment,
  readManifest,
  verifyEnvironment,
} from "./store.ts";

const REF_NAME = "org.opencontainers.image.ref.name";
const BLOB_PATH = /^blobs\/sha256\/([a-f0-9]{64})$/;
/** A version becomes a directory name: plain names only. */
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface SaveResult {
  name: string;
  version: string;
  output: string;
  digest: string;
  size_bytes: number;
}

export async function saveEnvironment(ctx: HostCtx, name: string, output: string): Promise<SaveResult> {
  const installed = findInstalled(ctx.home, name);
  if (!installed)
    throw new PyroError("ENVIRONMENT_NOT_FOUND", `environment ${name} is not installed`, {
      hint: `pyro env build ${name} (or pyro env pull ${name})`,
    });
  const { bytes: configBytes, manifest } = await readLocalManifest(installed.dir);
  const layers: ScannedLayer[] = [];
  for (const kind of ["kernel", "rootfs"] as const) {
    ctx.progress(`${kind}: verifying and compressing ${manifest[kind].file}`);
    layers.push(await scanLayer(installed.dir, kind, manifest, "zstd", ctx.progress));
  }
  const config = { digest: sha256Digest(configBytes), size: configBytes.byteLength };
  const ociBytes = new TextEncoder().encode(JSON.stringify(buildOciManifest(manifest, config, layers)));
  const digest = sha256Digest(ociBytes);
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.index,
    manifests: [
      {
        mediaType: MEDIA_TYPES.manifest,
        artifactType: MEDIA_TYPES.artifact,
        digest,
        size: ociBytes.byteLength,
        annotations: { [REF_NAME]: name },
      },
    ],
  };
  const small = (path: string, bytes: Uint8Array): TarWriteEntry => ({
    header: { path, type: "file", size: bytes.byteLength },
    body: [bytes],
  });
  const blobPath = (d: string) => `blobs/sha256/${d.slice("sha256:".length)}`;
  const layerEntry = (l: ScannedLayer): TarWriteEntry => {
    const again = new Digester();
    return {
      header: { path: blobPath(l.digest), type: "file", size: l.size },
      body: checked(tee(compress(readChunks(l.path), l.compression), again), () => {
        if (`sha256:${again.hex()}` !== l.digest)
          throw new PyroError("ENVIRONMENT_CORRUPT", `${l.file} changed while it was being saved`);
      }),
    };
  };
  // Metadata first, so a reader learns what the blobs are before it meets them.
  const entries = [
    small("oci-layout", new TextEncoder().encode('{"imageLayoutVersion":"1.0.0"}')),
    small("index.json", new TextEncoder().encode(JSON.stringify(index))),
    small(blobPath(digest), ociBytes),
    small(blobPath(config.digest), configBytes),
    ...layers.map(layerEntry),
  ];
  const out = resolve(output);
  const tmp = join(dirname(out), `.${out.split("/").pop()}.tmp-${process.pid}`);
  ctx.progress(`writing ${out}`);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(tmp, "w", 0o644);
    for await (const chunk of writeTar(entries)) await writeAll(fh, chunk);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, out);
  } catch (err) {
    await fh?.close().catch(() => {});
    await rm(tmp, { force: true });
    throw toPyroError(err);
  }
  const size = (await stat(out)).size;
  ctx.progress(`saved ${name} ${manifest.version} to ${out} (${formatBytes(size)})`);
  return { name, version: manifest.version, output: out, digest, size_bytes: size };
}

async function* checked(src: AsyncIterable<Uint8Array>, atEnd: () => void): AsyncGenerator<Uint8Array> {
  yield* src;
  atEnd();
}

export interface LoadResult {
  installed: InstalledEnvironment;
  digest: string;
}

export async function loadEnvironment(ctx: HostCtx, file: string): Promise<LoadResult> {
  const path = resolve(file);
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile())
    throw new PyroError("FILE_NOT_FOUND", `no environment archive at ${path}`, { details: { path } });
  const root = environmentsDir(ctx.home);
  await mkdir(root, { recursive: true });
  const staging = join(root, `.load-${process.pid}-${Date.now()}`);
  const blobs = join(staging, "blobs");
  await mkdir(blobs, { recursive: true });
  try {
    const small = new Map<string, Uint8Array>();
    ctx.progress(`reading ${path} (${formatBytes(info.size)})`);
    for await (const entry of readTar(readChunks(path))) {
      const name = entry.path.replace(/^(\.\/)+/, "");
      if (entry.type === "directory" && ["blobs/", "blobs/sha256/", "./", ""].includes(name)) continue;
      if (entry.type !== "file") throw notArchive(path, `unexpected ${entry.type} entry "${entry.path}"`);
      if (name === "oci-layout" || name === "index.json") {
        small.set(name, await readSmall(entry.body, entry.size, MAX_MANIFEST_BYTES, path, name));
        continue;
      }
      const hex = BLOB_PATH.exec(name)?.[1];
      if (!hex) throw notArchive(path, `unexpected entry "${entry.path}"`);
      await spoolBlob(entry.body, join(blobs, hex), hex);
    }
    const index = parseJson(small.get("index.json"), `index.json of ${path}`);
    const manifests = (index as { manifests?: Descriptor[] })?.manifests;
    if (!small.has("oci-layout") || !Array.isArray(manifests) || manifests.length !== 1)
      throw notArchive(path, "expected an OCI layout with exactly one manifest in index.json");
    const top = manifests[0] as Descriptor;
    const blob = async (d: Pick<Descriptor, "digest" | "size">, max: number) => {
      const hex = /^sha256:([a-f0-9]{64})$/.exec(String(d.digest))?.[1];
      const p = hex ? join(blobs, hex) : "";
      const st = p ? await stat(p).catch(() => undefined) : undefined;
      if (!st) throw corrupt(path, `blob ${d.digest} is missing`);
      if (st.size !== d.size || st.size > max) throw corrupt(path, `blob ${d.digest} has the wrong size`);
      return p;
    };
    const {
      manifest: oci,
      kernel,
      rootfs,
    } = parseOciManifest(
      parseJson(await readFile(await blob(top, MAX_MANIFEST_BYTES)), `manifest of ${path}`),
      path,
    );
    const configBytes = new Uint8Array(await readFile(await blob(oci.config, MAX_CONFIG_BYTES)));
    const env = parseEnvironmentManifest(parseJson(configBytes, `config of ${path}`), `config of ${path}`);
    if (!VERSION.test(env.version)) throw corrupt(path, `version "${env.version}" is not a plain name`);
    const unpacked = join(staging, "env");
    await mkdir(unpacked);
    for (const [desc, kind] of [
      [kernel, "kernel"],
      [rootfs, "rootfs"],
    ] as const) {
      await unpackLayer(
        await blob(desc, Number.MAX_SAFE_INTEGER),
        desc,
        env[kind],
        unpacked,
        kind,
        ctx.progress,
      );
    }
    await writeDurable(join(unpacked, "manifest.json"), configBytes);
    const manifest = readManifest(unpacked);
    if (!manifest || manifest.name !== env.name)
      throw corrupt(path, "manifest.json lacks fields an installed environment needs");
    const dest = envVersionDir(ctx.home, env.name, env.version);
    await install(unpacked, dest, true);
    const installed = { dir: dest, manifest };
    // Hashes once more and writes the verified stamp, so the first boot does not re-hash.
    await verifyEnvironment(installed, { force: true });
    ctx.progress(`loaded ${env.name} ${env.version} into ${dest}`);
    return { installed, digest: sha256Digest(await readFile(await blob(top, MAX_MANIFEST_BYTES))) };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function spoolBlob(body: AsyncIterable<Uint8Array>, dest: string, hex: string): Promise<void> {
  const d = new Digester();
  const fh = await open(`${dest}.partial`, "w", 0o600);
  try {
    for await (const chunk of body) {
      d.update(chunk);
      await writeAll(fh, chunk);
    }
  } finally {
    await fh.close();
  }
  const actual = d.hex();
  if (actual !== hex)
    throw new PyroError(
      "ENVIRONMENT_CORRUPT",
      `blob sha256:${hex} does not match its digest (the archive is damaged)`,
      { details: { digest: `sha256:${hex}`, actual: `sha256:${actual}` } },
    );
  await rename(`${dest}.partial`, dest);
}

async function readSmall(
  body: AsyncIterable<Uint8Array>,
  size: number,
  max: number,
  path: string,
  name: string,
): Promise<Uint8Array> {
  if (size > max) throw notArchive(path, `${name} is too large`);
  const out = new Uint8Array(size);
  let at = 0;
  for await (const chunk of body) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

function parseJson(bytes: Uint8Array | undefined, where: string): unknown {
  if (!bytes) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new PyroError("ENVIRONMENT_CORRUPT", `${where} is not JSON`);
  }
}

const notArchive = (path: string, why: string) =>
  new PyroError("INVALID_INPUT", `${path} is not a pyro environment archive: ${why}`, {
    details: { path },
    hint: "make one with `pyro env save NAME --output FILE`",
  });

const corrupt = (path: string, why: string) =>
  new PyroError("ENVIRONMENT_CORRUPT", `environment archive ${path} is damaged: ${why}`, {
    details: { path },
  });
