/**
 * A throwaway OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on a
 * free loopback port with storage in a temp dir, stopped by pid. `dataDir` is exposed so
 * tests can tamper with stored blobs.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestRegistry {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`, the registry part of references. */
  host: string;
  /** Storage root (`docker/registry/v2/...` lives below it). */
  dataDir: string;
  stop(): Promise<void>;
}

export function registryBinary(): string | null {
  return Bun.which("docker-registry");
}

/** Ask the kernel for a free port; the tiny race before the registry binds it is retried below. */
function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

export async function startRegistry(): Promise<TestRegistry> {
  const bin = registryBinary();
  if (!bin) throw new Error("docker-registry is not installed");
  const dir = await mkdtemp(join(tmpdir(), "pyro-registry-"));
  for (let attempt = 0; ; attempt++) {
    const port = freePort();
    const dataDir = join(dir, "data");
    const config = join(dir, "config.yml");
    await writeFile(
      config,
      [
        "version: 0.1",
        "log:",
        "  level: error",
        "storage:",
        "  filesystem:",
        `    rootdirectory: ${dataDir}`,
        "  delete:",
        "    enabled: true",
        "http:",
        `  addr: 127.0.0.1:${port}`,
        "",
      ].join("\n"),
    );
    const logPath = join(dir, "registry.log");
    const proc = Bun.spawn([bin, "serve", config], { stdout: Bun.file(logPath), stderr: Bun.file(logPath) });
    const url = `http://127.0.0.1:${port}`;
    const stop = async () => {
      proc.kill();
      await proc.exited;
      await rm(dir, { recursive: true, force: true });
    };
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && proc.exitCode === null) {
      const ok = await fetch(`${url}/v2/`)
        .then((r) => r.status === 200)
        .catch(() => false);
      if (ok) return { url, host: `127.0.0.1:${port}`, dataDir, stop };
      await Bun.sleep(50);
    }
    const log = await Bun.file(logPath)
      .text()
      .catch(() => "");
    proc.kill();
    await proc.exited;
    if (attempt < 2 && /address already in use/.test(log)) continue;
    await rm(dir, { recursive: true, force: true });
    throw new Error(`docker-registry did not start on ${url}:\n${log.slice(-2000)}`);
  }
}

export interface FakeRegistry {
  url: string;
  host: string;
  /** Scopes asked for at the token endpoint, in order. */
  tokenScopes: string[][];
  /** Authorization headers seen on /v2 requests (to check nothing leaks anonymously). */
  requests: { method: string; path: string; authorization: string | null; range: string | null }[];
  stop(): void;
}

/**
 * A tiny in-memory OCI registry that demands auth, for the token flows: `bearer` sends
 * `WWW-Authenticate: Bearer realm=<url>/token,...` and accepts tokens from that endpoint
 * (which itself wants basic credentials when `user` is set) or `staticToken`; `basic`
 * wants the credentials on every request. Upload locations are relative on purpose, and
 * `range: false` makes it ignore Range headers like some servers do.
 */
export function startFakeRegistry(opts: {
  auth: "bearer" | "basic";
  user?: string;
  password?: string;
  staticToken?: string;
  range?: boolean;
}): FakeRegistry {
  const blobs = new Map<string, Uint8Array>();
  const manifests = new Map<string, { bytes: Uint8Array; type: string }>();
  const uploads = new Map<string, Uint8Array[]>();
  const issued = new Set<string>(opts.staticToken ? [opts.staticToken] : []);
  const tokenScopes: string[][] = [];
  const requests: FakeRegistry["requests"] = [];
  const basic = opts.user ? `Basic ${btoa(`${opts.user}:${opts.password ?? ""}`)}` : undefined;
  const sha = (b: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(b).digest("hex")}`;
  const err = (status: number, code: string, headers: Record<string, string> = {}) =>
    Response.json({ errors: [{ code, message: code.toLowerCase() }] }, { status, headers });

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const path = url.pathname;
      const auth = req.headers.get("authorization");
      if (path === "/token") {
        tokenScopes.push(url.searchParams.getAll("scope"));
        if (basic && auth !== basic) return new Response("bad credentials", { status: 401 });
        const token = `tok-${crypto.randomUUID()}`;
        issued.add(token);
        return Response.json({ token, expires_in: 300 });
      }
      requests.push({ method: req.method, path, authorization: auth, range: req.headers.get("range") });
      const ok =
        opts.auth === "bearer"
          ? !!auth && issued.has(auth.replace(/^Bearer /, ""))
          : !!basic && auth === basic;
      if (!ok) {
        const repo = /^\/v2\/(.+?)\/(?:blobs|manifests)\//.exec(path)?.[1] ?? "";
        const challenge =
          opts.auth === "bearer"
            ? `Bearer realm="${url.origin}/token",service="fake-registry",scope="repository:${repo}:pull"`
            : `Basic realm="fake-registry"`;
        return err(401, "UNAUTHORIZED", { "www-authenticate": challenge });
      }
      if (path === "/v2/") return Response.json({});
      let m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(path);
      if (m) {
        const blob = blobs.get(m[2]!);
        if (!blob) return err(404, "BLOB_UNKNOWN");
        const headers = { "content-length": String(blob.byteLength), "docker-content-digest": m[2]! };
        if (req.method === "HEAD") return new Response(null, { headers });
        const range = /^bytes=(\d+)-$/.exec(req.headers.get("range") ?? "");
        if (range && opts.range !== false) {
          const from = Number(range[1]);
          return new Response(blob.subarray(from), {
            status: 206,
            headers: { "content-range": `bytes ${from}-${blob.byteLength - 1}/${blob.byteLength}` },
          });
        }
        return new Response(blob, { headers });
      }
      m = /^\/v2\/(.+)\/blobs\/uploads\/(\w*)$/.exec(path);
      if (m) {
        const id = m[2]!;
        if (req.method === "POST" && id === "") {
          const nid = crypto.randomUUID().replaceAll("-", "");
          uploads.set(nid, []);
          return new Response(null, {
            status: 202,
            headers: { location: `/v2/${m[1]}/blobs/uploads/${nid}` },
          });
        }
        const parts = uploads.get(id);
        if (!parts) return err(404, "BLOB_UPLOAD_UNKNOWN");
        if (req.method === "DELETE") return new Response(null, { status: 204 });
        parts.push(new Uint8Array(await req.arrayBuffer()));
        if (req.method === "PATCH") return new Response(null, { status: 202, headers: { location: path } });
        const whole = new Uint8Array(Buffer.concat(parts));
        const digest = url.searchParams.get("digest");
        if (digest !== sha(whole)) return err(400, "DIGEST_INVALID");
        blobs.set(digest, whole);
        uploads.delete(id);
        return new Response(null, { status: 201, headers: { location: `/v2/${m[1]}/blobs/${digest}` } });
      }
      m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
      if (m) {
        if (req.method === "PUT") {
          const bytes = new Uint8Array(await req.arrayBuffer());
          const entry = { bytes, type: req.headers.get("content-type") ?? "" };
          manifests.set(`${m[1]}:${m[2]}`, entry);
          manifests.set(`${m[1]}:${sha(bytes)}`, entry);
          return new Response(null, { status: 201, headers: { "docker-content-digest": sha(bytes) } });
        }
        const entry = manifests.get(`${m[1]}:${m[2]}`);
        if (!entry) return err(404, "MANIFEST_UNKNOWN");
        return new Response(req.method === "HEAD" ? null : entry.bytes, {
          headers: { "content-type": entry.type },
        });
      }
      return err(404, "NOT_FOUND");
    },
  });
  const url = `http://127.0.0.1:${server.port}`;
  return { url, host: `127.0.0.1:${server.port}`, tokenScopes, requests, stop: () => server.stop(true) };
}
