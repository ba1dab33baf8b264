/**
 * The pyro environment artifact format (documented in docs/registry.md): one OCI image
 * manifest whose config blob is the environment's manifest.json, byte for byte, and whose
 * two layers are the kernel and the ext4 rootfs, each optionally compressed. Keeping
 * manifest.json as the config means the registry's content addressing covers the
 * uncompressed sha256 values that pull verifies after decompression.
 */
import * as v from "valibot";
import { PyroError } from "../../protocol/errors.ts";

export const MEDIA_TYPES = {
  manifest: "application/vnd.oci.image.manifest.v1+json",
  index: "application/vnd.oci.image.index.v1+json",
  artifact: "application/vnd.pyro.environment.v1",
  config: "application/vnd.pyro.environment.config.v1+json",
  kernel: "application/vnd.pyro.kernel.v1",
  rootfs: "application/vnd.pyro.rootfs.ext4.v1",
} as const;

export type Compression = "none" | "gzip" | "zstd";
export type LayerKind = "kernel" | "rootfs";

/** Largest manifest / config we read into memory; real ones are a few KB. */
export const MAX_MANIFEST_BYTES = 4 << 20;
export const MAX_CONFIG_BYTES = 1 << 20;

const SHA256_HEX = v.pipe(v.string(), v.regex(/^[a-f0-9]{64}$/, "sha256 must be 64 lowercase hex"));
const DIGEST = v.pipe(v.string(), v.regex(/^sha256:[a-f0-9]{64}$/, "digest must be sha256:<hex>"));
const SIZE = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));
/** Files land inside the install dir: plain names only, never paths or our own temp names. */
const FILE_NAME = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/, "file must be a plain file name"),
  v.check(
    (s) => s !== "manifest.json" && !s.endsWith(".partial") && !s.endsWith(".tmp"),
    "reserved file name",
  ),
);
const FILE_ENTRY = v.looseObject({ file: FILE_NAME, sha256: SHA256_HEX, size: SIZE });

/** The subset of manifest.json the registry code relies on; other fields pass through. */
export const EnvironmentManifestSchema = v.pipe(
  v.looseObject({
    name: v.pipe(v.string(), v.minLength(1)),
    version: v.pipe(v.string(), v.minLength(1)),
    kernel: FILE_ENTRY,
    rootfs: FILE_ENTRY,
  }),
  v.check((m) => m.kernel.file !== m.rootfs.file, "kernel and rootfs must be different files"),
);
export type EnvironmentManifest = v.InferOutput<typeof EnvironmentManifestSchema>;

const DESCRIPTOR = v.looseObject({
  mediaType: v.string(),
  digest: DIGEST,
  size: SIZE,
  annotations: v.optional(v.record(v.string(), v.string())),
});
export type Descriptor = v.InferOutput<typeof DESCRIPTOR>;

const OCI_MANIFEST = v.looseObject({
  schemaVersion: v.literal(2),
  mediaType: v.optional(v.literal(MEDIA_TYPES.manifest)),
  artifactType: v.optional(v.string()),
  config: DESCRIPTOR,
  layers: v.array(DESCRIPTOR),
  annotations: v.optional(v.record(v.string(), v.string())),
});
export type OciManifest = v.InferOutput<typeof OCI_MANIFEST>;

export function layerMediaType(kind: LayerKind, compression: Compression): string {
  return compression === "none" ? MEDIA_TYPES[kind] : `${MEDIA_TYPES[kind]}+${compression}`;
}

/** Inverse of layerMediaType; undefined for anything that is not one of ours. */
export function parseLayerMediaType(
  mediaType: string,
): { kind: LayerKind; compression: Compression } | undefined {
  for (const kind of ["kernel", "rootfs"] as const) {
    for (const compression of ["none", "gzip", "zstd"] as const) {
      if (layerMediaType(kind, compression) === mediaType) return { kind, compression };
    }
  }
  return undefined;
}

function issues(result: { issues: [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]] }): string {
  return v.summarize(result.issues).replaceAll("\n", "; ");
}

/** Validate manifest.json content; `where` names the source in the error. */
export function parseEnvironmentManifest(value: unknown, where: string): EnvironmentManifest {
  const result = v.safeParse(EnvironmentManifestSchema, value);
  if (!result.success) {
    throw new PyroError(
      "ENVIRONMENT_CORRUPT",
      `invalid environment manifest in ${where}: ${issues(result)}`,
      {
        details: { where },
      },
    );
  }
  return result.output;
}

export interface LayerInput {
  kind: LayerKind;
  compression: Compression;
  digest: string;
  size: number;
  file: string;
}

/** Build the OCI manifest pushed for an environment. Key order is fixed so bytes are stable. */
export function buildOciManifest(
  env: EnvironmentManifest,
  config: { digest: string; size: number },
  layers: LayerInput[],
): OciManifest {
  const str = (x: unknown) => (typeof x === "string" || typeof x === "number" ? String(x) : undefined);
  const annotations: Record<string, string> = {
    "org.opencontainers.image.title": env.name,
    "org.opencontainers.image.version": env.version,
  };
  const created = str(env.built_at);
  if (created) annotations["org.opencontainers.image.created"] = created;
  const agent = str(env.agent_version);
  if (agent) annotations["dev.pyro.agent.version"] = agent;
  const protocol = str(env.protocol_version);
  if (protocol) annotations["dev.pyro.protocol.version"] = protocol;
  return {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    artifactType: MEDIA_TYPES.artifact,
    config: { mediaType: MEDIA_TYPES.config, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({
      mediaType: layerMediaType(l.kind, l.compression),
      digest: l.digest,
      size: l.size,
      annotations: { "org.opencontainers.image.title": l.file },
    })),
    annotations,
  };
}

/**
 * Check that a fetched manifest is a pyro environment and return its kernel and rootfs
 * layers. Anything else (a container image, an index) is INVALID_INPUT: the reference is
 * wrong, not the artifact. A pyro artifact with the wrong shape is ENVIRONMENT_CORRUPT.
 */
export function parseOciManifest(
  value: unknown,
  where: string,
): { manifest: OciManifest; kernel: Descriptor; rootfs: Descriptor } {
  const result = v.safeParse(OCI_MANIFEST, value);
  if (!result.success) {
    throw new PyroError("INVALID_INPUT", `${where} is not an OCI image manifest: ${issues(result)}`);
  }
  const manifest = result.output;
  const artifactType = manifest.artifactType ?? manifest.config.mediaType;
  // Pre-OCI-1.1 tools drop artifactType; the config media type then identifies the artifact.
  if (artifactType !== MEDIA_TYPES.artifact && artifactType !== MEDIA_TYPES.config) {
    throw new PyroError(
      "INVALID_INPUT",
      `${where} is not a pyro environment (artifactType ${artifactType})`,
      {
        details: { artifactType },
      },
    );
  }
  const corrupt = (why: string) => new PyroError("ENVIRONMENT_CORRUPT", `${where}: ${why}`);
  if (manifest.config.mediaType !== MEDIA_TYPES.config)
    throw corrupt(`unexpected config media type ${manifest.config.mediaType}`);
  if (manifest.config.size > MAX_CONFIG_BYTES)
    throw corrupt(`config blob too large (${manifest.config.size} bytes)`);
  const found: Partial<Record<LayerKind, Descriptor>> = {};
  for (const layer of manifest.layers) {
    const parsed = parseLayerMediaType(layer.mediaType);
    if (!parsed) throw corrupt(`unexpected layer media type ${layer.mediaType}`);
    if (found[parsed.kind]) throw corrupt(`more than one ${parsed.kind} layer`);
    found[parsed.kind] = layer;
  }
  if (!found.kernel || !found.rootfs) throw corrupt("expected exactly one kernel and one rootfs layer");
  return { manifest, kernel: found.kernel, rootfs: found.rootfs };
}
