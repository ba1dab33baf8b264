/**
 * Registry authentication (the Docker/OCI token flow). Requests go out anonymously first;
 * a 401 carries a `WWW-Authenticate` challenge: `Bearer realm=,service=,scope=` means fetch
 * a token from the realm (with basic credentials when we have some, anonymously otherwise)
 * and retry; `Basic` means send the credentials directly. Secrets never appear in messages:
 * every error built here or by the client passes through `redact`.
 */
import { PyroError } from "../../protocol/errors.ts";
import { isLoopbackHost } from "./reference.ts";

export type Credentials = { username: string; password: string } | { token: string };
export type Env = Record<string, string | undefined>;

/** PYRO_REGISTRY_TOKEN (a ready bearer token) wins over PYRO_REGISTRY_USERNAME/PASSWORD. */
export function credentialsFromEnv(env: Env = process.env): Credentials | undefined {
  if (env.PYRO_REGISTRY_TOKEN) return { token: env.PYRO_REGISTRY_TOKEN };
  if (env.PYRO_REGISTRY_USERNAME && env.PYRO_REGISTRY_PASSWORD !== undefined) {
    return { username: env.PYRO_REGISTRY_USERNAME, password: env.PYRO_REGISTRY_PASSWORD };
  }
  return undefined;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parse `WWW-Authenticate` (possibly several challenges) into schemes with parameters. */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  const re = /\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*))?\s*,?/y;
  let m: RegExpExecArray | null;
  // biome-ignore lint/suspicious/noAssignInExpressions: standard sticky-regex scan
  while (re.lastIndex < header.length && (m = re.exec(header)) !== null) {
    const [, key, raw] = m;
    if (raw === undefined) out.push({ scheme: key!.toLowerCase(), params: {} });
    else if (out.length > 0) {
      const value = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
      out[out.length - 1]!.params[key!.toLowerCase()] = value;
    }
    if (m[0] === "") break;
  }
  return out;
}

/** Replace every secret we know of with `***`; used on anything that may reach a message. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 3) out = out.split(s).join("***");
  return out;
}

export function basicHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
}

/**
 * Per-client auth state: the Authorization header to send, updated from challenges.
 * `scope` is what this client needs (`repository:<repo>:pull[,push]`).
 */
export class Authenticator {
  private current: string | undefined;
  private readonly known: string[] = [];

  constructor(
    private readonly creds: Credentials | undefined,
    private readonly scope: string,
    private readonly fetchFn: typeof fetch,
  ) {
    if (creds && "token" in creds) this.known.push(creds.token);
    if (creds && "password" in creds)
      this.known.push(creds.password, basicHeader(creds.username, creds.password).slice(6));
  }

  /** Secrets to scrub from any text that leaves this module. */
  get secrets(): readonly string[] {
    return this.known;
  }

  header(): string | undefined {
    return this.current;
  }

  /** React to a 401; true when a new Authorization header is ready and the request may be retried. */
  async handle(res: Response): Promise<boolean> {
    const challenges = parseChallenges(res.headers.get("www-authenticate") ?? "");
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    const before = this.current;
    if (bearer && !(this.creds && "token" in this.creds)) {
      // Tokens expire (minutes on some registries): a fresh one is always worth one retry.
      this.current = `Bearer ${await this.fetchToken(bearer.params)}`;
      return true;
    }
    if (bearer && this.creds && "token" in this.creds) this.current = `Bearer ${this.creds.token}`;
    else if (basic && this.creds && "password" in this.creds) {
      this.current = basicHeader(this.creds.username, this.creds.password);
    }
    // A static credential that was already rejected will not work on a second try.
    return this.current !== before;
  }

  private async fetchToken(params: Record<string, string>): Promise<string> {
    const realm = params.realm;
    if (!realm) throw new PyroError("REGISTRY_ERROR", "registry sent a Bearer challenge without a realm");
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new PyroError("REGISTRY_ERROR", `registry sent an invalid token realm ${JSON.stringify(realm)}`);
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.host))) {
      throw new PyroError(
        "REGISTRY_ERROR",
        `refusing token realm ${url.origin}: only https (or http on loopback) is allowed`,
      );
    }
    if (params.service) url.searchParams.set("service", params.service);
    const scopes = new Set([params.scope, this.scope].filter((s): s is string => !!s));
    for (const s of scopes) url.searchParams.append("scope", s);
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.creds && "password" in this.creds)
      headers.authorization = basicHeader(this.creds.username, this.creds.password);
    let res: Response;
    try {
      res = await this.fetchFn(url, { headers, redirect: "follow", signal: AbortSignal.timeout(60_000) });
    } catch (err) {
      const why = redact(err instanceof Error ? err.message : String(err), this.known);
      throw new PyroError("REGISTRY_ERROR", `cannot reach token service ${url.origin}: ${why}`);
    }
    const body = await res.text();
    if (!res.ok) {
      const hint =
        res.status === 401 || res.status === 403
          ? "check PYRO_REGISTRY_USERNAME / PYRO_REGISTRY_PASSWORD (or PYRO_REGISTRY_TOKEN)"
          : undefined;
      throw new PyroError("REGISTRY_ERROR", `token service ${url.origin} answered ${res.status}`, {
        details: { status: res.status },
        hint,
      });
    }
    let token: unknown;
    try {
      const json = JSON.parse(body) as { token?: unknown; access_token?: unknown };
      token = json.token ?? json.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== "string" || token === "") {
      throw new PyroError("REGISTRY_ERROR", `token service ${url.origin} returned no token`);
    }
    this.known.push(token);
    return token;
  }
}
