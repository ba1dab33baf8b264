/**
 * OCI push/pull of environments. Registry tests run against a real docker-registry
 * (distribution) with skopeo as an independent client; auth flows run against the
 * in-memory fake in test/registry.ts, which needs nothing installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  environmentReference,
  inspectEnvironment,
  partialBlobPath,
  pullEnvironment,
  pullStagingDir,
  pushEnvironment,
} from "../src/env/oci/index.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { needs } from "./capabilities.ts";
import { startFakeRegistry, startRegistry, type TestRegistry } from "./registry.ts";

const NO_ENV = {}; // keeps PYRO_REGISTRY* of the machine out of the tests

async function sha256File(path: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) h.update(chunk);
  return h.digest("hex");
}

/** A fake environment: small random "kernel", 64 MiB sparse "rootfs" with some random data. */
async function makeEnv(dir: string, seed: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "vmlinux"), Buffer.concat([Buffer.from(`\x7fELF ${seed}`), randomBytes(4096)]));
  const rootfs = join(dir, "rootfs.ext4");
  const proc = Bun.spawnSync(["truncate", "-s", "64M", rootfs]);
  expect(proc.exitCode).toBe(0);
  const fh = await open(rootfs, "r+");
  await fh.write(Buffer.from(`superblock ${seed}`), 0, undefined, 1024);
  await fh.write(randomBytes(300 << 10), 0, undefined, 10 << 20); // > upload chunk: exercises PATCH
  await fh.write(Buffer.from("tail"), 0, undefined, (64 << 20) - 4);
  await fh.close();
  const entry = async (file: string) => ({
    file,
    sha256: await sha256File(join(dir, file)),
    size: (await stat(join(dir, file))).size,
  });
  const manifest = {
    name: `test-${seed}`,
    version: "1",
    kernel: await entry("vmlinux"),
    rootfs: await entry("rootfs.ext4"),
    agent_version: "0.1.0",
    protocol_version: 1,
    built_at: "2025-01-01T00:00:00Z",
    packages: ["bash"],
  };
  await writeFile(join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return dir;
}

function randomBytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

async function expectSameFiles(a: string, b: string): Promise<void> {
  expect((await readdir(b)).sort()).toEqual(["manifest.json", "rootfs.ext4", "vmlinux"]);
  for (const f of ["vmlinux", "rootfs.ext4", "manifest.json"]) {
    expect(await sha256File(join(b, f))).toBe(await sha256File(join(a, f)));
  }
}

async function expectCode(p: Promise<unknown>, code: string): Promise<PyroError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(PyroError);
    expect((err as PyroError).code).toBe(code as PyroError["code"]);
    return err as PyroError;
  }
  throw new Error(`expected ${code}, but it succeeded`);
}

type Fetch = typeof fetch;
/** fetch that lets a test observe or rewrite requests and responses. */
function wrapFetch(hook: (url: string, init: RequestInit, next: Fetch) => Promise<Response>): Fetch {
  return ((input: string | URL | Request, init: RequestInit = {}) =>
    hook(String(input instanceof Request ? input.url : input), init, fetch)) as Fetch;
}

/** A response whose body errors after `limit` bytes, like a dropped connection. */
function cutAfter(res: Response, limit: number): Response {
  const reader = res.body!.getReader();
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      if (sent >= limit) {
        await reader.cancel();
        ctrl.error(new Error("connection reset (simulated)"));
        return;
      }
      const { done, value } = await reader.read();
      if (done) return ctrl.close();
      const part = value.subarray(0, limit - sent);
      sent += part.byteLength;
      ctrl.enqueue(part);
    },
  });
  return new Response(body, { status: res.status, headers: res.headers });
}

const work = await mkdtemp(join(tmpdir(), "pyro-oci-test-"));
afterAll(() => rm(work, { recursive: true, force: true }));

needs("docker-registry").describe("push/pull against docker-registry", () => {
  let reg: TestRegistry;
  let envDir: string;
  let ref: string;
  let pushed: { digest: string; ref: string };

  beforeAll(async () => {
    reg = await startRegistry();
    envDir = await makeEnv(join(work, "env"), "a");
    ref = `${reg.host}/pyro/test:1`;
  });
  afterAll(() => reg?.stop());

  const blobPath = (digest: string) =>
    join(reg.dataDir, "docker/registry/v2/blobs/sha256", digest.slice(7, 9), digest.slice(7), "data");

  test("push uploads config, kernel and rootfs (monolithic and chunked) and the manifest", async () => {
    const lines: string[] = [];
    pushed = await pushEnvironment(envDir, ref, {
      env: NO_ENV,
      chunkSize: 64 << 10,
      onProgress: (l) => lines.push(l),
    });
    expect(pushed.ref).toBe(ref);
    expect(pushed.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(lines.some((l) => l.startsWith("rootfs: uploading"))).toBe(true);
  });

  needs("skopeo").test("skopeo (an independent client) sees our artifact manifest", async () => {
    const proc = Bun.spawnSync(["skopeo", "inspect", "--tls-verify=false", "--raw", `docker://${ref}`]);
    expect(proc.exitCode).toBe(0);
    const raw = proc.stdout.toString();
    expect(`sha256:${new Bun.CryptoHasher("sha256").update(raw).digest("hex")}`).toBe(pushed.digest);
    const m = JSON.parse(raw);
    expect(m.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(m.artifactType).toBe("application/vnd.pyro.environment.v1");
    expect(m.config.mediaType).toBe("application/vnd.pyro.environment.config.v1+json");
    expect(m.layers).toHaveLength(2);
    expect(m.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual([
      "application/vnd.pyro.kernel.v1+zstd",
      "application/vnd.pyro.rootfs.ext4.v1+zstd",
    ]);
    expect(m.annotations["org.opencontainers.image.title"]).toBe("test-a");
  });

  test("pushing again skips blobs the registry already has", async () => {
    const lines: string[] = [];
    const again = await pushEnvironment(envDir, ref, { env: NO_ENV, onProgress: (l) => lines.push(l) });
    expect(again.digest).toBe(pushed.digest);
    expect(lines.filter((l) => l.includes("already in registry"))).toHaveLength(3);
  });

  test("pull installs identical files, sparse, and cleans its staging dir", async () => {
    const dest = join(work, "pulled", "test", "1");
    const result = await pullEnvironment(ref, dest, { env: NO_ENV });
    expect(result.digest).toBe(pushed.digest);
    expect(result.manifest.name).toBe("test-a");
    await expectSameFiles(envDir, dest);
    const st = await stat(join(dest, "rootfs.ext4"));
    expect(st.blocks * 512).toBeLessThan(8 << 20); // 64 MiB apparent, ~300 KiB of data
    expect(existsSync(pullStagingDir(dest, result.digest))).toBe(false);
    expect((await readdir(dirname(dest))).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("pull by digest and inspect without download", async () => {
    const pinned = `${reg.host}/pyro/test@${pushed.digest}`;
    const info = await inspectEnvironment(pinned, { env: NO_ENV });
    expect(info.manifest.version).toBe("1");
    expect(info.oci.layers).toHaveLength(2);
    const dest = join(work, "by-digest");
    await pullEnvironment(pinned, dest, { env: NO_ENV });
    await expectSameFiles(envDir, dest);
  });

  test("an existing destination is refused unless replace is set", async () => {
    const dest = join(work, "existing");
    await mkdir(dest, { recursive: true });
    await writeFile(join(dest, "old"), "x");
    await expectCode(pullEnvironment(ref, dest, { env: NO_ENV }), "ALREADY_EXISTS");
    await pullEnvironment(ref, dest, { env: NO_ENV, replace: true });
    await expectSameFiles(envDir, dest);
    expect((await readdir(work)).filter((n) => n.startsWith(".existing"))).toEqual([]);
  });

  test("missing tag is ENVIRONMENT_NOT_FOUND", async () => {
    await expectCode(
      pullEnvironment(`${reg.host}/pyro/test:nope`, join(work, "nope"), { env: NO_ENV }),
      "ENVIRONMENT_NOT_FOUND",
    );
    expect(existsSync(join(work, "nope"))).toBe(false);
  });

  test("a corrupt local environment is refused before anything is sent", async () => {
    const bad = await makeEnv(join(work, "bad-env"), "bad");
    const fh = await open(join(bad, "rootfs.ext4"), "r+");
    await fh.write(Buffer.from("flipped"), 0, undefined, 5000);
    await fh.close();
    const err = await expectCode(
      pushEnvironment(bad, `${reg.host}/pyro/bad:1`, { env: NO_ENV }),
      "ENVIRONMENT_CORRUPT",
    );
    expect(err.message).toContain("rootfs.ext4");
    await expectCode(inspectEnvironment(`${reg.host}/pyro/bad:1`, { env: NO_ENV }), "ENVIRONMENT_NOT_FOUND");
  });

  test("a tampered blob fails with ENVIRONMENT_CORRUPT and installs nothing", async () => {
    const env = await makeEnv(join(work, "tamper-env"), "tamper"); // own blobs: others stay intact
    const tref = `${reg.host}/pyro/tamper:1`;
    await pushEnvironment(env, tref, { env: NO_ENV });
    const info = await inspectEnvironment(tref, { env: NO_ENV });
    const rootfsLayer = info.oci.layers[1]!;
    const data = await readFile(blobPath(rootfsLayer.digest));
    data[data.length - 10]! ^= 0xff;
    await writeFile(blobPath(rootfsLayer.digest), data);
    const dest = join(work, "tampered");
    await expectCode(pullEnvironment(tref, dest, { env: NO_ENV }), "ENVIRONMENT_CORRUPT");
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(pullStagingDir(dest, info.digest))).toBe(false);
  });

  test("a file that does not match manifest.json after decompression is ENVIRONMENT_CORRUPT", async () => {
    // Serve a config whose rootfs sha256 is wrong (and a manifest pointing at it): every blob
    // digest checks out, so only the uncompressed-file check can catch it.
    const info = await inspectEnvironment(ref, { env: NO_ENV });
    const badConfig = new TextEncoder().encode(
      JSON.stringify({ ...info.manifest, rootfs: { ...info.manifest.rootfs, sha256: "0".repeat(64) } }),
    );
    const badDigest = `sha256:${new Bun.CryptoHasher("sha256").update(badConfig).digest("hex")}`;
    const manifest = {
      ...info.oci,
      config: { ...info.oci.config, digest: badDigest, size: badConfig.byteLength },
    };
    const f = wrapFetch(async (url, init, next) => {
      if (url.includes("/manifests/")) {
        return new Response(JSON.stringify(manifest), {
          headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
        });
      }
      if (url.endsWith(badDigest)) return new Response(badConfig);
      return next(url, init);
    });
    const dest = join(work, "bad-config");
    const err = await expectCode(
      pullEnvironment(ref, dest, { env: NO_ENV, fetch: f }),
      "ENVIRONMENT_CORRUPT",
    );
    expect(err.message).toContain("rootfs.ext4");
    expect(existsSync(dest)).toBe(false);
  });

  test("an interrupted pull keeps its partial download and the next pull resumes with Range", async () => {
    const dest = join(work, "resume");
    const info = await inspectEnvironment(ref, { env: NO_ENV });
    const rootfsDigest = info.oci.layers[1]!.digest;
    const cut = wrapFetch(async (url, init, next) => {
      const res = await next(url, init);
      return url.endsWith(`/blobs/${rootfsDigest}`) ? cutAfter(res, 100_000) : res;
    });
    const err = await expectCode(pullEnvironment(ref, dest, { env: NO_ENV, fetch: cut }), "REGISTRY_ERROR");
    expect(err.hint).toContain("resume");
    expect(existsSync(dest)).toBe(false);
    const partial = partialBlobPath(dest, info.digest, rootfsDigest);
    expect((await stat(partial)).size).toBe(100_000);

    const ranges: string[] = [];
    const lines: string[] = [];
    const watch = wrapFetch(async (url, init, next) => {
      const range = new Headers(init.headers).get("range");
      if (range) ranges.push(range);
      return next(url, init);
    });
    await pullEnvironment(ref, dest, { env: NO_ENV, fetch: watch, onProgress: (l) => lines.push(l) });
    expect(ranges).toEqual(["bytes=100000-"]);
    expect(lines.some((l) => l.includes("resuming"))).toBe(true);
    expect(lines).toContain("kernel: already staged");
    await expectSameFiles(envDir, dest);
  });

  test("a pre-created partial file is resumed; garbage in it is detected and re-downloaded", async () => {
    const info = await inspectEnvironment(ref, { env: NO_ENV });
    const rootfsDigest = info.oci.layers[1]!.digest;
    const blob = await readFile(blobPath(rootfsDigest));

    const good = join(work, "partial-good");
    await mkdir(dirname(partialBlobPath(good, info.digest, rootfsDigest)), { recursive: true });
    await writeFile(partialBlobPath(good, info.digest, rootfsDigest), blob.subarray(0, 5000));
    const lines: string[] = [];
    await pullEnvironment(ref, good, { env: NO_ENV, onProgress: (l) => lines.push(l) });
    expect(lines.some((l) => l.includes("resuming download at"))).toBe(true);
    await expectSameFiles(envDir, good);

    const garbage = join(work, "partial-garbage");
    await mkdir(pullStagingDir(garbage, info.digest), { recursive: true });
    await writeFile(partialBlobPath(garbage, info.digest, rootfsDigest), randomBytes(5000));
    lines.length = 0;
    await pullEnvironment(ref, garbage, { env: NO_ENV, onProgress: (l) => lines.push(l) });
    expect(lines.some((l) => l.includes("did not verify"))).toBe(true);
    await expectSameFiles(envDir, garbage);
  });

  test("a server that ignores Range restarts the download", async () => {
    const info = await inspectEnvironment(ref, { env: NO_ENV });
    const rootfsDigest = info.oci.layers[1]!.digest;
    const dest = join(work, "no-range");
    await mkdir(pullStagingDir(dest, info.digest), { recursive: true });
    await writeFile(partialBlobPath(dest, info.digest, rootfsDigest), randomBytes(5000));
    const noRange = wrapFetch((url, init, next) => {
      const headers = new Headers(init.headers);
      headers.delete("range");
      return next(url, { ...init, headers });
    });
    const lines: string[] = [];
    await pullEnvironment(ref, dest, { env: NO_ENV, fetch: noRange, onProgress: (l) => lines.push(l) });
    expect(lines.some((l) => l.includes("does not support resuming"))).toBe(true);
    await expectSameFiles(envDir, dest);
  });

  test("gzip and uncompressed layers round-trip too", async () => {
    for (const compression of ["gzip", "none"] as const) {
      const cref = `${reg.host}/pyro/test:${compression}`;
      await pushEnvironment(envDir, cref, { env: NO_ENV, compression });
      const info = await inspectEnvironment(cref, { env: NO_ENV });
      expect(info.oci.layers[1]!.mediaType).toBe(
        compression === "none"
          ? "application/vnd.pyro.rootfs.ext4.v1"
          : "application/vnd.pyro.rootfs.ext4.v1+gzip",
      );
      const dest = join(work, `c-${compression}`);
      await pullEnvironment(cref, dest, { env: NO_ENV });
      await expectSameFiles(envDir, dest);
    }
  });

  test("PYRO_REGISTRY supplies the registry for short names", async () => {
    const env = { PYRO_REGISTRY: `${reg.host}/pyro` };
    expect(environmentReference("test:1", undefined, env)).toBe(ref);
    const dest = join(work, "short-name");
    await pullEnvironment("test:1", dest, { env });
    await expectSameFiles(envDir, dest);
  });

  test("a container image is not mistaken for an environment", async () => {
    const f = wrapFetch(async (url, init, next) =>
      url.includes("/manifests/")
        ? new Response(
            JSON.stringify({
              schemaVersion: 2,
              mediaType: "application/vnd.oci.image.manifest.v1+json",
              config: {
                mediaType: "application/vnd.oci.image.config.v1+json",
                digest: `sha256:${"1".repeat(64)}`,
                size: 2,
              },
              layers: [],
            }),
            { headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" } },
          )
        : next(url, init),
    );
    await expectCode(pullEnvironment(ref, join(work, "image"), { env: NO_ENV, fetch: f }), "INVALID_INPUT");
  });
});

describe("auth against a fake registry that demands credentials", () => {
  let envDir: string;
  beforeAll(async () => {
    envDir = await makeEnv(join(work, "auth-env"), "auth");
  });

  test("bearer: token fetched with basic credentials, push then pull", async () => {
    const fake = startFakeRegistry({ auth: "bearer", user: "alice", password: "s3cret-pw" });
    try {
      const ref = `${fake.host}/pyro/auth:1`;
      const auth = { username: "alice", password: "s3cret-pw" };
      await pushEnvironment(envDir, ref, { env: NO_ENV, auth, chunkSize: 64 << 10 });
      expect(fake.tokenScopes.length).toBeGreaterThan(0);
      expect(fake.tokenScopes[0]).toContain("repository:pyro/auth:pull,push");
      expect(fake.requests.some((r) => r.method === "PATCH")).toBe(true); // chunked upload path
      const dest = join(work, "auth-pulled");
      await pullEnvironment(ref, dest, { env: NO_ENV, auth });
      await expectSameFiles(envDir, dest);
      expect(fake.tokenScopes.at(-1)).toContain("repository:pyro/auth:pull");
      // Once a token is held, requests carry it instead of re-asking anonymously.
      expect(fake.requests.filter((r) => r.authorization === null).length).toBeLessThanOrEqual(2);
    } finally {
      fake.stop();
    }
  });

  test("bearer: credentials come from PYRO_REGISTRY_USERNAME/PASSWORD; wrong ones never leak", async () => {
    const fake = startFakeRegistry({ auth: "bearer", user: "bob", password: "hunter2-pw" });
    try {
      const ref = `${fake.host}/pyro/auth:1`;
      await pushEnvironment(envDir, ref, {
        env: { PYRO_REGISTRY_USERNAME: "bob", PYRO_REGISTRY_PASSWORD: "hunter2-pw" },
      });
      const anon = await expectCode(inspectEnvironment(ref, { env: NO_ENV }), "REGISTRY_ERROR");
      expect(anon.hint).toContain("PYRO_REGISTRY_USERNAME");
      const wrong = await expectCode(
        inspectEnvironment(ref, {
          env: { PYRO_REGISTRY_USERNAME: "bob", PYRO_REGISTRY_PASSWORD: "wrong-pw-123" },
        }),
        "REGISTRY_ERROR",
      );
      const text = JSON.stringify(wrong.toJSON()) + String(wrong.stack);
      expect(text).not.toContain("wrong-pw-123");
      expect(text).not.toContain(btoa("bob:wrong-pw-123"));
    } finally {
      fake.stop();
    }
  });

  test("bearer: PYRO_REGISTRY_TOKEN is sent as-is", async () => {
    const fake = startFakeRegistry({ auth: "bearer", staticToken: "static-token-xyz" });
    try {
      const ref = `${fake.host}/pyro/auth:2`;
      await pushEnvironment(envDir, ref, { env: { PYRO_REGISTRY_TOKEN: "static-token-xyz" } });
      const info = await inspectEnvironment(ref, { env: { PYRO_REGISTRY_TOKEN: "static-token-xyz" } });
      expect(info.manifest.name).toBe("test-auth");
      expect(fake.tokenScopes).toHaveLength(0);
    } finally {
      fake.stop();
    }
  });

  test("basic challenge: credentials sent directly; Range ignored by this server", async () => {
    const fake = startFakeRegistry({ auth: "basic", user: "carol", password: "pw-basic-1", range: false });
    try {
      const ref = `${fake.host}/pyro/auth:3`;
      const auth = { username: "carol", password: "pw-basic-1" };
      await pushEnvironment(envDir, ref, { env: NO_ENV, auth });
      const info = await inspectEnvironment(ref, { env: NO_ENV, auth });
      const dest = join(work, "basic-pulled");
      const rootfsDigest = info.oci.layers[1]!.digest;
      await mkdir(pullStagingDir(dest, info.digest), { recursive: true });
      await writeFile(partialBlobPath(dest, info.digest, rootfsDigest), randomBytes(100));
      await pullEnvironment(ref, dest, { env: NO_ENV, auth });
      await expectSameFiles(envDir, dest);
      await expectCode(inspectEnvironment(ref, { env: NO_ENV }), "REGISTRY_ERROR");
    } finally {
      fake.stop();
    }
  });
});

describe("without a registry", () => {
  test("a short name with PYRO_REGISTRY unset is a REGISTRY_ERROR that says what to do", async () => {
    const err = await expectCode(
      pullEnvironment("debian:12", join(work, "nowhere"), { env: NO_ENV }),
      "REGISTRY_ERROR",
    );
    expect(err.message).toContain("PYRO_REGISTRY");
    expect(() => environmentReference("debian:12", undefined, NO_ENV)).toThrow(/PYRO_REGISTRY/);
    expect(environmentReference("debian:12", "localhost:5000/x/debian:12-1", NO_ENV)).toBe(
      "localhost:5000/x/debian:12-1",
    );
  });

  test("an unreachable registry is a REGISTRY_ERROR", async () => {
    const port = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const free = port.port;
    port.stop(true);
    await expectCode(inspectEnvironment(`127.0.0.1:${free}/pyro/x:1`, { env: NO_ENV }), "REGISTRY_ERROR");
  });

  test("push refuses a directory without manifest.json", async () => {
    const empty = join(work, "empty-env");
    await mkdir(empty, { recursive: true });
    await expectCode(
      pushEnvironment(empty, "127.0.0.1:1/pyro/x:1", { env: NO_ENV }),
      "ENVIRONMENT_NOT_FOUND",
    );
  });
});
