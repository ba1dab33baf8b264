import { describe, expect, test } from "bun:test";
import type { PyroError } from "../../protocol/errors.ts";
import {
  buildOciManifest,
  MEDIA_TYPES,
  parseEnvironmentManifest,
  parseLayerMediaType,
  parseOciManifest,
} from "./artifact.ts";

const hex = (c: string) => c.repeat(64);
const env = parseEnvironmentManifest(
  {
    name: "debian:12",
    version: "12-1",
    kernel: { file: "vmlinux", sha256: hex("a"), size: 10 },
    rootfs: { file: "rootfs.ext4", sha256: hex("b"), size: 20 },
    agent_version: "0.1.0",
    protocol_version: 1,
    built_at: "2025-01-01T00:00:00Z",
    packages: [],
  },
  "test",
);
const built = buildOciManifest(env, { digest: `sha256:${hex("c")}`, size: 5 }, [
  { kind: "kernel", compression: "zstd", digest: `sha256:${hex("d")}`, size: 3, file: "vmlinux" },
  { kind: "rootfs", compression: "gzip", digest: `sha256:${hex("e")}`, size: 4, file: "rootfs.ext4" },
]);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as PyroError).code;
  }
  return undefined;
}

describe("artifact format", () => {
  test("built manifest parses back to its layers", () => {
    expect(built.artifactType).toBe(MEDIA_TYPES.artifact);
    expect(built.annotations?.["org.opencontainers.image.version"]).toBe("12-1");
    const parsed = parseOciManifest(JSON.parse(JSON.stringify(built)), "t");
    expect(parsed.kernel.mediaType).toBe("application/vnd.pyro.kernel.v1+zstd");
    expect(parsed.rootfs.mediaType).toBe("application/vnd.pyro.rootfs.ext4.v1+gzip");
  });

  test("layer media types", () => {
    expect(parseLayerMediaType("application/vnd.pyro.rootfs.ext4.v1")).toEqual({
      kind: "rootfs",
      compression: "none",
    });
    expect(parseLayerMediaType("application/vnd.oci.image.layer.v1.tar+gzip")).toBeUndefined();
  });

  test("wrong shapes: foreign artifacts are INVALID_INPUT, broken pyro ones ENVIRONMENT_CORRUPT", () => {
    expect(
      codeOf(() =>
        parseOciManifest(
          { ...built, artifactType: "application/x-other", config: { ...built.config, mediaType: "x" } },
          "t",
        ),
      ),
    ).toBe("INVALID_INPUT");
    expect(codeOf(() => parseOciManifest({ schemaVersion: 1 }, "t"))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseOciManifest({ ...built, layers: built.layers.slice(0, 1) }, "t"))).toBe(
      "ENVIRONMENT_CORRUPT",
    );
    expect(
      codeOf(() => parseOciManifest({ ...built, layers: [...built.layers, built.layers[0]] }, "t")),
    ).toBe("ENVIRONMENT_CORRUPT");
    expect(
      codeOf(() => parseOciManifest({ ...built, config: { ...built.config, size: 1 << 30 } }, "t")),
    ).toBe("ENVIRONMENT_CORRUPT");
  });

  test("file names in manifest.json must be plain names (they are written inside the install dir)", () => {
    for (const file of ["../evil", "/etc/passwd", "a/b", "manifest.json", "x.partial", ".hidden", ""]) {
      expect(codeOf(() => parseEnvironmentManifest({ ...env, kernel: { ...env.kernel, file } }, "t"))).toBe(
        "ENVIRONMENT_CORRUPT",
      );
    }
    expect(
      codeOf(() => parseEnvironmentManifest({ ...env, rootfs: { ...env.rootfs, file: "vmlinux" } }, "t")),
    ).toBe("ENVIRONMENT_CORRUPT");
  });
});
