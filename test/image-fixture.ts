/**
 * Test images built here without network: a busybox-static tree packed as an OCI image
 * layout (layers written with pyro's own tar writer, so every entry is exactly what the test
 * says), and the same image as a `docker save` tar. Layers:
 *   1 (gzip): busybox + applet links, /etc/os-release, /etc/doomed (whited out by layer 2),
 *      /opt/old/{a,b} (hidden by layer 2's opaque marker), /data/file + hard link
 *      /data/file-link, symlink /etc/os-link -> /etc/os-release (absolute: stored as is)
 *   2 (zstd): /etc/.wh.doomed, /opt/old/.wh..wh..opq + /opt/old/new, /app (WorkingDir),
 *      hard link /app/hl -> data/file (to a file of layer 1)
 * Config: Env PATH=/bin and GREETING, WorkingDir /app, Cmd ["/bin/sh"].
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type TarWriteEntry, writeTar } from "../src/protocol/archive/tar.ts";

export const OS_RELEASE = 'NAME="pyro fixture"\nID=pyrofixture\nVERSION_ID=1\n';
export const FIXTURE_ENV = { PATH: "/bin", GREETING: "hello from the image" };
export const FIXTURE_WORKDIR = "/app";
const APPLETS = ["sh", "cat", "ls", "env", "pwd", "echo", "test", "stat", "id", "mkdir"];

const sha = (b: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(b).digest("hex")}`;
const te = new TextEncoder();

export async function tarBytes(entries: TarWriteEntry[]): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of writeTar(entries)) parts.push(c);
  return new Uint8Array(Buffer.concat(parts));
}

export const file = (path: string, text: string | Uint8Array, mode = 0o644): TarWriteEntry => {
  const body = typeof text === "string" ? te.encode(text) : text;
  return { header: { path, type: "file", mode, size: body.length, mtime: 1_700_000_000 }, body: [body] };
};
export const dir = (path: string): TarWriteEntry => ({
  header: { path, type: "directory", mode: 0o755, mtime: 1_700_000_000 },
});
export const symlink = (path: string, target: string): TarWriteEntry => ({
  header: { path, type: "symlink", linkTarget: target, mtime: 1_700_000_000 },
});
export const hardlink = (path: string, target: string): TarWriteEntry => ({
  header: { path, type: "hardlink", linkTarget: target, mtime: 1_700_000_000 },
});

export function busyboxLayer(): TarWriteEntry[] {
  const busybox = new Uint8Array(readFileSync("/bin/busybox"));
  return [
    dir("bin"),
    file("bin/busybox", busybox, 0o755),
    ...APPLETS.map((a) => symlink(`bin/${a}`, "busybox")),
    dir("etc"),
    file("etc/os-release", OS_RELEASE),
    file("etc/doomed", "this file is whited out by layer 2\n"),
    symlink("etc/os-link", "/etc/os-release"),
    dir("opt"),
    dir("opt/old"),
    file("opt/old/a", "a\n"),
    file("opt/old/b", "b\n"),
    dir("data"),
    file("data/file", "linked content\n"),
    hardlink("data/file-link", "data/file"),
  ];
}

export function topLayer(): TarWriteEntry[] {
  return [
    dir("etc"),
    file("etc/.wh.doomed", ""),
    dir("opt/old"),
    file("opt/old/.wh..wh..opq", ""),
    file("opt/old/new", "new\n"),
    dir("app"),
    file("app/README", "the working dir\n"),
    hardlink("app/hl", "data/file"),
  ];
}

export interface LayerSpec {
  tar: Uint8Array;
  compression: "gzip" | "zstd" | "none";
}

export interface ImageSpec {
  layers: LayerSpec[];
  architecture?: string;
  /** damage layer N's stored blob after computing its digest */
  corruptLayer?: number;
}

function compress(l: LayerSpec): { bytes: Uint8Array; mediaType: string } {
  if (l.compression === "gzip")
    return {
      bytes: Bun.gzipSync(new Uint8Array(l.tar)),
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
    };
  if (l.compression === "zstd")
    return {
      bytes: Bun.zstdCompressSync(new Uint8Array(l.tar)),
      mediaType: "application/vnd.oci.image.layer.v1.tar+zstd",
    };
  return { bytes: l.tar, mediaType: "application/vnd.oci.image.layer.v1.tar" };
}

function config(spec: ImageSpec): Uint8Array {
  return te.encode(
    JSON.stringify({
      architecture: spec.architecture ?? "amd64",
      os: "linux",
      config: {
        Env: Object.entries(FIXTURE_ENV).map(([k, v]) => `${k}=${v}`),
        WorkingDir: FIXTURE_WORKDIR,
        Cmd: ["/bin/sh"],
      },
      rootfs: { type: "layers", diff_ids: spec.layers.map((l) => sha(l.tar)) },
    }),
  );
}

/** Write an OCI image layout (tag "latest") to `out`. */
export function writeOciLayout(out: string, spec: ImageSpec): void {
  mkdirSync(join(out, "blobs", "sha256"), { recursive: true });
  const put = (b: Uint8Array) => {
    const d = sha(b);
    writeFileSync(join(out, "blobs", "sha256", d.slice(7)), b);
    return { digest: d, size: b.length };
  };
  const cfg = config(spec);
  const layers = spec.layers.map((l, i) => {
    const c = compress(l);
    const desc = { mediaType: c.mediaType, ...put(c.bytes) };
    if (spec.corruptLayer === i) {
      const damaged = new Uint8Array(c.bytes);
      damaged[damaged.length - 1] = (damaged[damaged.length - 1]! ^ 0xff) & 0xff;
      writeFileSync(join(out, "blobs", "sha256", desc.digest.slice(7)), damaged);
    }
    return desc;
  });
  const manifest = te.encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...put(cfg) },
      layers,
    }),
  );
  const m = put(manifest);
  writeFileSync(join(out, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    join(out, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...m,
          platform: { architecture: spec.architecture ?? "amd64", os: "linux" },
          annotations: { "org.opencontainers.image.ref.name": "latest" },
        },
      ],
    }),
  );
}

/** The legacy `docker save` format: manifest.json, <config digest>.json, <n>/layer.tar. */
export async function writeDockerSave(outTar: string, spec: ImageSpec): Promise<void> {
  const cfg = config(spec);
  const cfgName = `${sha(cfg).slice(7)}.json`;
  const entries: TarWriteEntry[] = [file(cfgName, cfg)];
  const names: string[] = [];
  spec.layers.forEach((l, i) => {
    entries.push(dir(`layer${i}`), file(`layer${i}/layer.tar`, l.tar));
    names.push(`layer${i}/layer.tar`);
  });
  entries.push(
    file("manifest.json", JSON.stringify([{ Config: cfgName, RepoTags: ["fixture:1"], Layers: names }])),
  );
  writeFileSync(outTar, await tarBytes(entries));
}

export async function fixtureSpec(): Promise<ImageSpec> {
  return {
    layers: [
      { tar: await tarBytes(busyboxLayer()), compression: "gzip" },
      { tar: await tarBytes(topLayer()), compression: "zstd" },
    ],
  };
}

/** Push an OCI layout to a loopback registry with skopeo (an independent client). */
export async function skopeoPush(layout: string, ref: string): Promise<void> {
  const p = Bun.spawn(
    ["skopeo", "copy", "--dest-tls-verify=false", `oci:${layout}:latest`, `docker://${ref}`],
    {
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const code = await p.exited;
  if (code !== 0) throw new Error(`skopeo copy failed: ${await new Response(p.stderr).text()}`);
}
