/**
 * OCI references: `host[:port]/repo/path[:tag][@sha256:hex]`, following the Docker/OCI
 * reference grammar, minus Docker Hub magic: there is no implicit `docker.io`. A reference
 * without a registry host is resolved against a default registry (PYRO_REGISTRY), which may
 * carry a namespace (`localhost:5000/pyro`). Plain HTTP is allowed only for loopback hosts,
 * so credentials and artifacts never cross a network unencrypted.
 */
import { PyroError } from "../../protocol/errors.ts";

export interface Reference {
  /** `host[:port]` as it appears in URLs (IPv6 in brackets), host lowercased. */
  registry: string;
  /** Repository path, e.g. `pyro/debian`. */
  repository: string;
  /** Tag; defaults to `latest` when neither tag nor digest is given. */
  tag?: string;
  /** `sha256:<64 hex>`; when present it wins over the tag. */
  digest?: string;
  /** `http` for loopback registries, `https` for everything else. */
  scheme: "http" | "https";
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function invalid(input: string, why: string): PyroError {
  return new PyroError("INVALID_INPUT", `invalid registry reference ${JSON.stringify(input)}: ${why}`, {
    details: { reference: input },
  });
}

/** Split `host[:port]`; returns undefined when it is not a valid registry host. */
function splitHost(hostport: string): { host: string; port?: string } | undefined {
  let host: string;
  let port: string | undefined;
  if (hostport.startsWith("[")) {
    const end = hostport.indexOf("]");
    if (end < 0) return undefined;
    host = hostport.slice(0, end + 1);
    const rest = hostport.slice(end + 1);
    if (rest !== "" && !rest.startsWith(":")) return undefined;
    port = rest ? rest.slice(1) : undefined;
    if (!/^\[[0-9a-fA-F:.]+\]$/.test(host) || !host.includes(":")) return undefined;
  } else {
    const i = hostport.lastIndexOf(":");
    host = i < 0 ? hostport : hostport.slice(0, i);
    port = i < 0 ? undefined : hostport.slice(i + 1);
    if (host === "" || !host.split(".").every((l) => LABEL.test(l))) return undefined;
  }
  if (port !== undefined && !(/^\d{1,5}$/.test(port) && Number(port) > 0 && Number(port) < 65536))
    return undefined;
  return { host: host.toLowerCase(), port };
}

/** localhost, 127.0.0.0/8 and ::1: the only hosts pyro talks plain HTTP to. */
export function isLoopbackHost(hostOrHostPort: string): boolean {
  const parsed = splitHost(hostOrHostPort);
  const host = parsed?.host ?? hostOrHostPort.toLowerCase();
  if (host === "localhost") return true;
  const v4 = IPV4.exec(host);
  if (v4) return v4[1] === "127" && v4.slice(1).every((o) => Number(o) <= 255);
  const v6 = host.replace(/^\[|\]$/g, "");
  return v6 === "::1" || /^(0{1,4}:){7}0{0,3}1$/.test(v6) || /^(0{1,4}:)+:0{0,3}1$/.test(v6);
}

/** The first path component names a registry when it looks like a host (Docker's rule). */
function looksLikeHost(component: string): boolean {
  return (
    component === "localhost" ||
    component.includes(".") ||
    component.includes(":") ||
    component.startsWith("[")
  );
}

/**
 * Parse a reference. `defaultRegistry` (`host[:port][/namespace]`) is used when the input
 * names no registry; without one, that is a REGISTRY_ERROR telling the user what to set.
 */
export function parseReference(input: string, defaultRegistry?: string): Reference {
  const raw = input.trim();
  if (raw === "" || raw.length > 512 || /\s/.test(raw))
    throw invalid(input, "empty, too long or contains spaces");
  let rest = raw;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalid(input, "digest must be sha256:<64 lowercase hex>");
  }
  // A tag is after the last ':' that follows the last '/', so `host:5000/repo` has no tag.
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/") && !rest.slice(colon).includes("]")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(input, "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
  }
  let parts = rest.split("/");
  let registry: string;
  if (parts.length > 1 && looksLikeHost(parts[0]!)) {
    registry = parts[0]!;
    parts = parts.slice(1);
  } else {
    const fallback = defaultRegistry?.trim().replace(/\/+$/, "");
    if (!fallback) {
      throw new PyroError(
        "REGISTRY_ERROR",
        `reference ${JSON.stringify(input)} names no registry and PYRO_REGISTRY is not set`,
        {
          hint: "set PYRO_REGISTRY (e.g. localhost:5000/pyro), pass a full reference such as localhost:5000/pyro/debian:12, or build the environment locally",
        },
      );
    }
    if (/^[a-z]+:\/\//i.test(fallback)) {
      throw new PyroError(
        "INVALID_INPUT",
        `PYRO_REGISTRY must be host[:port][/namespace], without a scheme (got ${fallback})`,
      );
    }
    const [defHost, ...ns] = fallback.split("/");
    registry = defHost!;
    parts = [...ns, ...parts];
  }
  const hp = splitHost(registry);
  if (!hp) throw invalid(input, `bad registry host ${JSON.stringify(registry)}`);
  registry = hp.port ? `${hp.host}:${hp.port}` : hp.host;
  const repository = parts.join("/");
  if (parts.length === 0 || !parts.every((p) => COMPONENT.test(p))) {
    throw invalid(input, "repository path components must be lowercase [a-z0-9] separated by . _ __ or -");
  }
  if (repository.length > 255) throw invalid(input, "repository path longer than 255 characters");
  if (tag === undefined && digest === undefined) tag = "latest";
  const scheme = isLoopbackHost(hp.host) ? "http" : "https";
  return {
    registry,
    repository,
    ...(tag !== undefined && { tag }),
    ...(digest !== undefined && { digest }),
    scheme,
  };
}

/** Canonical text form: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/** What to ask the registry for: the digest when pinned, the tag otherwise. */
export function manifestSelector(ref: Reference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

/** `http(s)://host[:port]` for a registry, applying the loopback-only plain HTTP rule. */
export function registryOrigin(ref: Pick<Reference, "registry" | "scheme">): string {
  return `${ref.scheme}://${ref.registry}`;
}
