/**
 * Host paths over MCP. The chat model is not the user: it reaches host paths only under
 * roots the user granted when starting the server. Invariants:
 * - Every input field an operation declares in `hostPaths` is checked here before the
 *   operation runs, and replaced by its canonical form (symlinks resolved), so the
 *   operation acts on exactly the path that was checked. An array field's host paths are
 *   its items' `file_path` (workspace_create's secrets).
 * - A path is allowed when its real location (realpath of the path, or of its nearest
 *   existing ancestor for a path that does not exist yet) lies under a granted root with
 *   the access needed: `read` needs any root or the export directory, `write` needs a
 *   read-write root or the export directory. Anything else is HOST_PATH_NOT_ALLOWED, with a hint naming the flag.
 * - Relative paths: writes are taken relative to the export directory, reads relative to
 *   the first granted root (the project root once project-aware startup grants it).
 * - Writes are re-checked right before writing (`guardWrite`, via Ctx.guardHostWrite).
 * - Error text crossing MCP is scrubbed: PYRO_HOME, the export dir and the roots become
 *   placeholders (`<pyro-home>`, `<export-dir>`, `<host-root-N>`), any other
 *   absolute path becomes `<path>` (it may name a host file); /workspace paths are kept.
 * The CLI and SDK never go through here: they are the user and keep full host access.
 */
import { mkdirSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import type { AnyOperation as Operation } from "../operations/types.ts";
import { PyroError } from "../protocol/errors.ts";

export type RootAccess = "ro" | "rw";
export interface HostRoot {
  path: string;
  access: RootAccess;
}

/** `DIR`, `DIR:ro` or `DIR:rw` (the --allow-host-path syntax) → a root. */
export function parseRoot(spec: string): HostRoot {
  const m = /^(.*):(ro|rw)$/.exec(spec);
  const path = m ? (m[1] as string) : spec;
  if (!path) throw new PyroError("INVALID_INPUT", `--allow-host-path: empty directory in "${spec}"`);
  return { path, access: m?.[2] === "rw" ? "rw" : "ro" };
}

function isUnder(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith("/") ? root : `${root}/`);
}

/** realpath of `p`, or of its nearest existing ancestor joined with the rest (lexically normalised). */
function realpathNearest(p: string): string {
  const rest: string[] = [];
  let cur = resolve(p);
  for (;;) {
    try {
      return join(realpathSync(cur), ...rest.reverse());
    } catch {
      const up = dirname(cur);
      if (up === cur) return resolve(p);
      rest.push(basename(cur));
      cur = up;
    }
  }
}

const NOT_ALLOWED_HINT =
  "the MCP server reaches host paths only under roots granted at start: `pyro mcp serve --allow-host-path DIR` (read-only) or `DIR:rw`; exports go under `--export-dir`";

export class HostPathPolicy {
  readonly roots: HostRoot[];
  readonly exportDir: string;
  private readonly placeholders: Array<[string, string]>;

  /**
   * roots must exist (they are resolved now, once); the export dir is created 0700 when
   * missing. `home` is PYRO_HOME, only for scrubbing.
   */
  constructor(opts: { roots: Array<HostRoot | string>; exportDir: string; home: string }) {
    this.roots = opts.roots.map((r) => {
      const root = typeof r === "string" ? parseRoot(r) : r;
      return { path: realDir(root.path, "--allow-host-path"), access: root.access };
    });
    mkdirSync(opts.exportDir, { recursive: true, mode: 0o700 });
    this.exportDir = realDir(opts.exportDir, "--export-dir");
    const named: Array<[string, string]> = [
      [this.exportDir, "<export-dir>"],
      ...this.roots.map((r, i): [string, string] => [r.path, `<host-root-${i + 1}>`]),
      [resolve(opts.home), "<pyro-home>"],
    ];
    try {
      named.push([realpathSync(opts.home), "<pyro-home>"]);
    } catch {}
    // Longest first: the export dir usually lies inside PYRO_HOME, a root may contain another.
    this.placeholders = named.filter(([p]) => p !== "/").sort((a, b) => b[0].length - a[0].length);
  }

  /** Check (and canonicalise) every host-path field of an MCP call; throws HOST_PATH_NOT_ALLOWED. */
  check<I extends Record<string, unknown>>(op: Operation, input: I): I {
    if (!op.hostPaths) return input;
    const out: Record<string, unknown> = { ...input };
    for (const [field, use] of Object.entries(op.hostPaths as Record<string, string>)) {
      const value = out[field];
      const confine = (p: string) =>
        use === "write" ? this.writeTarget(field, p) : this.readSource(field, p);
      if (typeof value === "string") out[field] = confine(value);
      else if (Array.isArray(value))
        out[field] = value.map((item) =>
          item && typeof item === "object" && typeof item.file_path === "string"
            ? { ...item, file_path: confine(item.file_path) }
            : item,
        );
    }
    return out as I;
  }

  private readSource(field: string, value: string): string {
    const base = this.roots[0]?.path;
    if (!isAbsolute(value) && base === undefined) throw this.refuse(field, value);
    const real = realpathNearest(resolve(base ?? "/", value));
    if (!isUnder(real, this.exportDir) && !this.roots.some((r) => isUnder(real, r.path)))
      throw this.refuse(field, value);
    return real;
  }

  private writeTarget(field: string, value: string): string {
    const abs = resolve(this.exportDir, value);
    if (abs === "/") throw this.refuse(field, value);
    const realParent = realpathNearest(dirname(abs));
    if (!this.writable(realParent)) throw this.refuse(field, value);
    return join(realParent, basename(abs));
  }

  private writable(realDir: string): boolean {
    return (
      isUnder(realDir, this.exportDir) ||
      this.roots.some((r) => r.access === "rw" && isUnder(realDir, r.path))
    );
  }

  /** Ctx.guardHostWrite: the directory about to receive a write, resolved again now. */
  readonly guardWrite = (dir: string): void => {
    let real: string;
    try {
      real = realpathSync(dir);
    } catch {
      real = dir;
    }
    if (!this.writable(real)) throw this.refuse("output", dir);
  };

  private refuse(field: string, value: string): PyroError {
    return new PyroError(
      "HOST_PATH_NOT_ALLOWED",
      `${field}: ${this.scrub(value)} is outside the host paths this MCP server may ${field === "output" ? "write" : "read"}`,
      { hint: NOT_ALLOWED_HINT, details: { field } },
    );
  }

  /** Error text safe for the model: known host dirs as placeholders, other host paths hidden. */
  scrub(text: string): string {
    let s = text;
    for (const [path, name] of this.placeholders) {
      s = s.replace(new RegExp(`${escapeRe(path)}(?=/|$|[^\\w.-])`, "g"), name);
    }
    // Any other absolute path (not /workspace, not part of a URL or a placeholder) is hidden.
    return s.replace(/(^|[\s'"`(=,:[])(\/(?!workspace(?:\/|$|[^\w.-]))[^\s'"`),;\]]*)/g, "$1<path>");
  }

  /** scrub applied to every string in a JSON-like value (error details). */
  scrubValue(value: unknown): unknown {
    if (typeof value === "string") return this.scrub(value);
    if (Array.isArray(value)) return value.map((x) => this.scrubValue(x));
    if (value && typeof value === "object")
      return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, this.scrubValue(x)]));
    return value;
  }
}

function realDir(path: string, flag: string): string {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    throw new PyroError("FILE_NOT_FOUND", `${flag} ${path}: no such directory`);
  }
  if (!statSync(real).isDirectory())
    throw new PyroError("NOT_A_DIRECTORY", `${flag} ${path}: not a directory`);
  return real;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
