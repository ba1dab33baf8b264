/**
 * A minimal OCI distribution client (the subset pyro needs: blobs HEAD/GET/upload, manifests
 * GET/PUT) bound to one repository. It owns the cross-cutting rules: auth retries, manual
 * redirects (Authorization is only ever sent to the registry's own origin, never to the
 * storage backend a blob redirects to, and never downgraded to plain HTTP), timeouts, and
 * mapping registry errors to PyroError with secrets redacted.
 */
import { PyroError } from "../../protocol/errors.ts";
import { Authenticator, type Credentials, credentialsFromEnv, type Env, redact } from "./auth.ts";
import { isLoopbackHost, manifestSelector, type Reference, registryOrigin } from "./reference.ts";

export interface RegistryOptions {
  /** Explicit credentials; default: PYRO_REGISTRY_TOKEN or PYRO_REGISTRY_USERNAME/PASSWORD. */
  auth?: Credentials;
  /** Environment for PYRO_REGISTRY* lookups (default process.env). */
  env?: Env;
  /** Human-readable progress lines. */
  onProgress?: (line: string) => void;
  /** Injected fetch (tests). */
  fetch?: typeof fetch;
  /** Abort a request when no response headers / body bytes arrive for this long (default 60 s). */
  stallTimeoutMs?: number;
}

interface SendInit {
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** Abort while waiting for headers after this many ms (0: caller manages its own signal). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class RegistryClient {
  readonly origin: string;
  private readonly auth: Authenticator;
  private readonly fetchFn: typeof fetch;
  readonly stallTimeoutMs: number;

  constructor(
    readonly ref: Reference,
    actions: "pull" | "push",
    opts: RegistryOptions = {},
  ) {
    this.origin = registryOrigin(ref);
    this.fetchFn = opts.fetch ?? fetch;
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 60_000;
    const scope = `repository:${ref.repository}:${actions === "push" ? "pull,push" : "pull"}`;
    this.auth = new Authenticator(opts.auth ?? credentialsFromEnv(opts.env), scope, this.fetchFn);
  }

  /** URL under `/v2/<repository>/`. */
  url(path: string): string {
    return `${this.origin}/v2/${this.ref.repository}/${path}`;
  }

  /** Scrub known secrets from text that may end up in an error. */
  redact(text: string): string {
    return redact(text, this.auth.secrets);
  }

  /** Send one request, following redirects and answering one auth challenge. */
  async send(method: string, url: string, init: SendInit = {}): Promise<Response> {
    let target = url;
    let verb = method;
    let body = init.body;
    let retried = false;
    for (let hops = 0; hops < 10; hops++) {
      const own = new URL(target).origin === this.origin;
      const headers = new Headers(init.headers);
      const authorization = own ? this.auth.header() : undefined;
      if (authorization) headers.set("authorization", authorization);
      const timeoutMs = init.timeoutMs ?? this.stallTimeoutMs;
      const signals = [init.signal, timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined].filter(
        (s): s is AbortSignal => !!s,
      );
      let res: Response;
      try {
        res = await this.fetchFn(target, {
          method: verb,
          headers,
          body,
          redirect: "manual",
          signal: signals.length ? AbortSignal.any(signals) : undefined,
        });
      } catch (err) {
        const why = this.redact(err instanceof Error ? err.message : String(err));
        throw new PyroError("REGISTRY_ERROR", `${verb} ${new URL(target).origin}: ${why}`, {
          details: { registry: this.ref.registry },
          hint: `is the registry at ${this.origin} running and reachable?`,
          cause: err,
        });
      }
      if (res.status === 401 && own && !retried) {
        retried = true;
        if (await this.auth.handle(res)) {
          await res.body?.cancel();
          continue;
        }
      }
      const location = res.headers.get("location");
      if (REDIRECTS.has(res.status) && location) {
        await res.body?.cancel();
        const next = new URL(location, target);
        if (next.protocol !== "https:" && !(next.protocol === "http:" && isLoopbackHost(next.host))) {
          throw new PyroError("REGISTRY_ERROR", `refusing redirect to ${next.origin}: only https is allowed`);
        }
        target = next.href;
        if (res.status === 303) {
          verb = verb === "HEAD" ? "HEAD" : "GET";
          body = undefined;
        }
        continue;
      }
      return res;
    }
    throw new PyroError("REGISTRY_ERROR", `too many redirects for ${method} ${url}`);
  }

  /** Throw a PyroError for an unexpected status, with the registry's own error text. */
  async fail(
    res: Response,
    what: string,
    notFound: "ENVIRONMENT_NOT_FOUND" | "REGISTRY_ERROR" = "REGISTRY_ERROR",
  ): Promise<never> {
    let detail = "";
    try {
      const text = (await res.text()).slice(0, 4096);
      const json = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      detail = (json.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; ");
    } catch {
      // not JSON: the status says enough
    }
    const message = this.redact(`${what}: registry answered ${res.status}${detail ? ` (${detail})` : ""}`);
    const details = { registry: this.ref.registry, repository: this.ref.repository, status: res.status };
    if (res.status === 404 && (notFound === "ENVIRONMENT_NOT_FOUND" || /NAME_UNKNOWN/.test(detail))) {
      throw new PyroError("ENVIRONMENT_NOT_FOUND", message, { details });
    }
    const hint =
      res.status === 401 || res.status === 403
        ? "set PYRO_REGISTRY_USERNAME and PYRO_REGISTRY_PASSWORD (or PYRO_REGISTRY_TOKEN) for this registry"
        : undefined;
    throw new PyroError("REGISTRY_ERROR", message, { details, hint });
  }

  /** Read a small body, refusing more than `limit` bytes (manifests, config). */
  async readLimited(res: Response, limit: number, what: string): Promise<Uint8Array> {
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > limit) {
      await res.body?.cancel();
      throw new PyroError("REGISTRY_ERROR", `${what} is too large (${declared} bytes)`);
    }
    // Content-Length may be absent (chunked): count while reading instead of trusting it.
    const parts: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of res.body ?? []) {
      total += chunk.byteLength;
      if (total > limit) {
        await res.body?.cancel().catch(() => {});
        throw new PyroError("REGISTRY_ERROR", `${what} is too large (over ${limit} bytes)`);
      }
      parts.push(chunk);
    }
    return new Uint8Array(Buffer.concat(parts));
  }

  async blobExists(digest: string): Promise<boolean> {
    const res = await this.send("HEAD", this.url(`blobs/${digest}`));
    await res.body?.cancel();
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    return this.fail(res, `HEAD blob ${digest}`);
  }

  /** GET a blob, from `offset` with a Range request when offset > 0. Caller checks 200 vs 206. */
  async getBlob(digest: string, offset: number, signal?: AbortSignal): Promise<Response> {
    // identity: a transparently decompressed body would break digests and ranges.
    const headers: Record<string, string> = { "accept-encoding": "identity" };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const res = await this.send("GET", this.url(`blobs/${digest}`), { headers, signal, timeoutMs: 0 });
    if (res.status === 200 || res.status === 206) return res;
    return this.fail(res, `GET blob ${digest}`);
  }

  /** Small blob into memory, verified against its descriptor. */
  async readBlob(desc: { digest: string; size: number }, limit: number): Promise<Uint8Array> {
    const res = await this.send("GET", this.url(`blobs/${desc.digest}`), {
      headers: { "accept-encoding": "identity" },
    });
    if (res.status !== 200) return this.fail(res, `GET blob ${desc.digest}`);
    const bytes = await this.readLimited(res, limit, `blob ${desc.digest}`);
    if (bytes.byteLength !== desc.size || sha256Digest(bytes) !== desc.digest) {
      throw new PyroError(
        "ENVIRONMENT_CORRUPT",
        `blob ${desc.digest} from ${this.ref.registry} does not match its digest`,
        {
          details: { digest: desc.digest },
        },
      );
    }
    return bytes;
  }

  async getManifest(accept: string[], limit: number): Promise<{ bytes: Uint8Array; contentType: string }> {
    const res = await this.send("GET", this.url(`manifests/${manifestSelector(this.ref)}`), {
      headers: { accept: accept.join(", ") },
    });
    if (res.status !== 200) {
      return this.fail(
        res,
        `GET manifest ${this.ref.repository}:${manifestSelector(this.ref)}`,
        "ENVIRONMENT_NOT_FOUND",
      );
    }
    const contentType = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
    return { bytes: await this.readLimited(res, limit, "manifest"), contentType };
  }

  async putManifest(bytes: Uint8Array, mediaType: string): Promise<void> {
    const res = await this.send("PUT", this.url(`manifests/${manifestSelector(this.ref)}`), {
      headers: { "content-type": mediaType },
      body: bytes,
    });
    await res.body?.cancel();
    if (res.status !== 201 && res.status !== 200 && res.status !== 202) await this.fail(res, "PUT manifest");
  }

  /** POST /blobs/uploads/ → upload session URL. */
  async startUpload(): Promise<string> {
    const res = await this.send("POST", this.url("blobs/uploads/"), { headers: { "content-length": "0" } });
    await res.body?.cancel();
    if (res.status !== 202) return this.fail(res, "start blob upload");
    return this.location(res, this.url("blobs/uploads/"));
  }

  /** PATCH one chunk at `offset`; returns the session URL for the next request. */
  async patchUpload(session: string, chunk: Uint8Array, offset: number): Promise<string> {
    const res = await this.send("PATCH", session, {
      headers: {
        "content-type": "application/octet-stream",
        "content-range": `${offset}-${offset + chunk.byteLength - 1}`,
      },
      body: chunk,
    });
    await res.body?.cancel();
    if (res.status !== 202) return this.fail(res, "upload blob chunk");
    return this.location(res, session);
  }

  /** PUT ?digest= closes the session; `body` carries the whole blob for monolithic uploads. */
  async finishUpload(session: string, digest: string, body?: Uint8Array): Promise<void> {
    const url = new URL(session);
    url.searchParams.set("digest", digest);
    const res = await this.send("PUT", url.href, {
      headers: { "content-type": "application/octet-stream" },
      body: body ?? new Uint8Array(0),
    });
    await res.body?.cancel();
    if (res.status !== 201 && res.status !== 204) await this.fail(res, `finish upload of ${digest}`);
  }

  /** Best effort: drop an abandoned upload session. */
  async cancelUpload(session: string): Promise<void> {
    await this.send("DELETE", session)
      .then((r) => r.body?.cancel())
      .catch(() => {});
  }

  private location(res: Response, base: string): string {
    const loc = res.headers.get("location");
    if (!loc) throw new PyroError("REGISTRY_ERROR", "registry did not return an upload location");
    const url = new URL(loc, base);
    // Another origin is allowed (send() withholds our Authorization there), a downgrade is not.
    if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.host))) {
      throw new PyroError(
        "REGISTRY_ERROR",
        `refusing upload location on ${url.origin}: only https is allowed`,
      );
    }
    return url.href;
  }
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
}
