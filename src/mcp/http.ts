/**
 * `pyro mcp serve --http ADDR:PORT` (or `--listen ADDR:PORT`): the MCP server over MCP's
 * streamable HTTP transport, for a pyro host shared by several clients. The endpoint is
 * `http://ADDR:PORT/mcp`.
 *
 * Invariants:
 * - Every request carries `Authorization: Bearer <token>` or is answered 401 (with
 *   `WWW-Authenticate: Bearer`) before its body is read or anything is created. The token is
 *   compared in constant time (SHA-256 of both sides, then timingSafeEqual on the two digests,
 *   so neither its content nor its length shows in the timing).
 * - The token is 32 random bytes (base64url) in `$PYRO_HOME/mcp-http.token`, mode 0600, created
 *   atomically (temp file + link: concurrent first starts agree on one token) and printed to
 *   stderr only by the start that created it; `--token-file F` uses F instead. A token file
 *   readable or writable by group or others is refused.
 * - `--http` binds loopback only (127.0.0.0/8, ::1, localhost); any other address needs
 *   `--listen`, which prints a warning. There is no TLS: put a TLS proxy in front beyond a host.
 * - Stateless: every POST gets a fresh transport and a fresh `Server` from createServer(opts)
 *   (the same tools, limits and options as stdio). pyro keeps no per-client state (workspaces
 *   live in PYRO_HOME, so every client sees all of them) and sends no server-initiated messages,
 *   so there is no session to create, look up, leak or lose on restart. GET (the optional
 *   server→client stream) and DELETE (session end) answer 405, as the spec allows.
 * - Answers are plain JSON (no SSE), one per POST: a request is in flight exactly until its
 *   answer is ready, and Bun's idle timeout is lifted while it is (an exec may run long).
 * - A body over MAX_REQUEST_BYTES (8 MiB, as on stdio) is answered 413 with the
 *   INPUT_TOO_LARGE error as JSON-RPC error data, without being read whole (a declared
 *   Content-Length is refused unread; a streamed body is dropped once past the limit).
 * - SIGTERM/SIGINT: stop listening, let requests in flight finish (at most STOP_GRACE_MS),
 *   exit 0. Workspaces are untouched: they belong to their supervisors, not to this server.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { join } from "node:path";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { pyroHome } from "../manager/paths.ts";
import { PyroError } from "../protocol/errors.ts";
import { createServer, type ServerOptions } from "./server.ts";
import { MAX_REQUEST_BYTES } from "./stdio.ts";

/** The token's file name under PYRO_HOME. */
export const TOKEN_FILE = "mcp-http.token";
/** The one path MCP is served on. */
export const MCP_PATH = "/mcp";
/** How long a stopping server waits for requests in flight. */
export const STOP_GRACE_MS = 10_000;
/** A token: visible ASCII, no whitespace, long enough not to be guessed. */
const TOKEN_SHAPE = /^[\x21-\x7e]{32,4096}$/;

export interface ListenAddress {
  hostname: string;
  port: number;
}

/** `ADDR:PORT` (`[v6]:PORT` for IPv6) as given to --http or --listen. */
export function parseAddress(flag: string, value: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const hostname = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !hostname || port > 65535 || (m[1] && !isIPv6(hostname)))
    throw new PyroError("INVALID_INPUT", `${flag}: expected ADDR:PORT (e.g. 127.0.0.1:8765), got "${value}"`);
  return { hostname, port };
}

export function isLoopback(hostname: string): boolean {
  if (hostname === "localhost") return true;
  if (isIPv4(hostname)) return hostname.startsWith("127.");
  return isIPv6(hostname) && /^(0{0,4}:){2,7}0{0,3}1$|^::1$/.test(hostname);
}

/**
 * Where to listen: `--http` must be loopback; `--listen` may be anything (the caller warns).
 * Exactly one of them is given.
 */
export function listenAddress(flags: { http?: string; listen?: string }): ListenAddress {
  if (flags.http !== undefined && flags.listen !== undefined)
    throw new PyroError("INVALID_INPUT", "mcp serve: give --http or --listen, not both");
  if (flags.listen !== undefined) return parseAddress("--listen", flags.listen);
  const addr = parseAddress("--http", flags.http ?? "");
  if (!isLoopback(addr.hostname))
    throw new PyroError("INVALID_INPUT", `--http ${flags.http}: --http binds loopback addresses only`, {
      hint: `to accept connections from other machines, say so explicitly: --listen ${flags.http}`,
    });
  return addr;
}

function readToken(path: string): string {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    throw new PyroError("FILE_NOT_FOUND", `token file ${path} cannot be read: ${(err as Error).message}`);
  }
  if ((mode & 0o077) !== 0)
    throw new PyroError(
      "PERMISSION_DENIED",
      `token file ${path} is accessible to group or others (mode ${(mode & 0o777).toString(8)})`,
      { hint: `chmod 600 ${path}` },
    );
  const token = readFileSync(path, "utf8").trim();
  if (!TOKEN_SHAPE.test(token))
    throw new PyroError(
      "INVALID_INPUT",
      `token file ${path} must hold one token of 32 to 4096 visible ASCII characters`,
      { hint: "e.g. `head -c 32 /dev/urandom | base64 | tr -d '=+/' > FILE`" },
    );
  return token;
}

/**
 * The bearer token: from `tokenFile`, else `$PYRO_HOME/mcp-http.token`, created on first use
 * (and then, only then, handed to `announce`).
 */
export function loadToken(
  home: string,
  tokenFile: string | undefined,
  announce: (token: string, path: string) => void,
): string {
  if (tokenFile !== undefined) return readToken(tokenFile);
  const path = join(home, TOKEN_FILE);
  const token = randomBytes(32).toString("base64url");
  const tmp = `${path}.tmp.${process.pid}.${randomBytes(4).toString("hex")}`;
  try {
    mkdirSync(home, { recursive: true, mode: 0o700 });
    writeFileSync(tmp, `${token}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    throw new PyroError("IO_ERROR", `cannot create the token file in ${home}: ${(err as Error).message}`, {
      hint: "make PYRO_HOME writable, or give a token with --token-file",
    });
  }
  try {
    linkSync(tmp, path); // fails if a token exists: the first start's token stays
    announce(token, path);
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return readToken(path);
  } finally {
    unlinkSync(tmp);
  }
}

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

/** Whether an Authorization header carries the token (constant time in the token and the header's value). */
export function bearerMatches(expected: Buffer, header: string | null): boolean {
  const m = /^Bearer +(\S+) *$/i.exec(header ?? "");
  const same = timingSafeEqual(digest(m?.[1] ?? ""), expected);
  return same && m !== null;
}

function jsonRpcError(status: number, code: number, message: string, extra: Record<string, unknown> = {}) {
  const { headers, data } = extra as { headers?: Record<string, string>; data?: unknown };
  return new Response(
    JSON.stringify({ jsonrpc: "2.0", id: null, error: { code, message, ...(data ? { data } : {}) } }),
    { status, headers: { "content-type": "application/json", ...headers } },
  );
}

function tooLarge(bytes: number | null): Response {
  const err = new PyroError(
    "INPUT_TOO_LARGE",
    `request${bytes === null ? "" : ` of ${bytes} bytes`} exceeds the MCP request limit of ${MAX_REQUEST_BYTES} bytes`,
    {
      details: { ...(bytes === null ? {} : { bytes }), limit: MAX_REQUEST_BYTES },
      hint: "send less per call: write a large file in parts, or seed/sync it from a host directory",
    },
  );
  return jsonRpcError(413, -32600, `${err.code}: ${err.message}`, { data: err.toJSON() });
}

export interface HttpFlags {
  http?: string;
  listen?: string;
  tokenFile?: string;
}

/**
 * Serve MCP over HTTP until SIGTERM/SIGINT. Resolves once listening; the process then
 * belongs to the server (it exits when stopped).
 */
export async function serveHttp(opts: ServerOptions, flags: HttpFlags): Promise<void> {
  const say = (line: string) => process.stderr.write(`pyro mcp: ${line}\n`);
  const addr = listenAddress(flags);
  if (flags.listen !== undefined && !isLoopback(addr.hostname))
    say(
      `WARNING: listening on ${flags.listen}, reachable from other machines. Anyone holding the token can run code on this host; traffic is not encrypted (put a TLS proxy in front).`,
    );
  const home = pyroHome(opts.env ?? process.env);
  const expected = digest(
    loadToken(home, flags.tokenFile, (token, path) =>
      say(`generated a bearer token (stored in ${path}, mode 0600; shown only this once):\n${token}`),
    ),
  );
  let inFlight = 0;
  let stopping = false;
  let idle: (() => void) | null = null;

  const handle = async (req: Request, server: Bun.Server<undefined>): Promise<Response> => {
    if (!bearerMatches(expected, req.headers.get("authorization")))
      return jsonRpcError(401, -32001, "Unauthorized: a valid bearer token is required", {
        headers: { "www-authenticate": 'Bearer realm="pyro"' },
      });
    if (new URL(req.url).pathname !== MCP_PATH)
      return jsonRpcError(404, -32601, `not found: MCP is served at ${MCP_PATH}`);
    if (req.method !== "POST")
      return jsonRpcError(405, -32000, "Method not allowed: this server is stateless (POST only)", {
        headers: { allow: "POST" },
      });
    if (stopping) return jsonRpcError(503, -32000, "the server is stopping");
    const declared = Number(req.headers.get("content-length"));
    if (declared > MAX_REQUEST_BYTES) return tooLarge(declared);
    server.timeout(req, 0); // an answer may take as long as the call (exec timeout_seconds)
    inFlight++;
    const mcp = createServer(opts);
    try {
      const transport = new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: true,
        maxRequestBodySize: MAX_REQUEST_BYTES,
      });
      await mcp.connect(transport);
      const res = await transport.handleRequest(req);
      return res.status === 413 ? tooLarge(null) : res;
    } finally {
      await mcp.close();
      if (--inFlight === 0) idle?.();
    }
  };

  let server: Bun.Server<undefined>;
  try {
    server = Bun.serve({
      hostname: addr.hostname,
      port: addr.port,
      development: false,
      fetch: handle,
      error: (err) => jsonRpcError(500, -32603, `internal error: ${err.message}`),
    });
  } catch (err) {
    throw new PyroError(
      "IO_ERROR",
      `cannot listen on ${addr.hostname}:${addr.port}: ${(err as Error).message}`,
    );
  }
  const host = server.hostname?.includes(":") ? `[${server.hostname}]` : server.hostname;
  say(`serving MCP (streamable HTTP) at http://${host}:${server.port}${MCP_PATH}`);

  const stop = () => {
    if (stopping) return;
    stopping = true;
    void server.stop(); // stop accepting; requests in flight go on
    const done = inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => (idle = r));
    void Promise.race([done, Bun.sleep(STOP_GRACE_MS)]).then(() => {
      void server.stop(true);
      process.exit(0);
    });
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
