/**
 * Project-aware seeding: a git checkout whose tracked files seed a workspace when
 * `workspace_create` gets no `seed_path` (the MCP server sets `project` on the create
 * input; see src/mcp/server.ts).
 *
 * Invariants:
 * - git itself decides what is tracked (`git ls-files -z --stage`, run with an argv, never a
 *   shell): no ignore logic of our own. Content is the working tree's current content of
 *   those paths (uncommitted edits included), packed by the race-free packTree with
 *   everything that is not a tracked path (or a directory above one) excluded, so `.git`,
 *   ignored and untracked files never leave the host.
 * - A tracked path that cannot be seeded is reported in `skipped` (and left out), never
 *   fatal: missing from the working tree, a submodule, unreadable, or neither a regular
 *   file nor a symlink (a fifo, socket or device, or a directory where a file is tracked). A file that changes between this listing
 *   and the upload fails the upload (IO_ERROR) like any seed.
 * - `origin_ref` is `<origin>@<HEAD commit>` (just `<origin>` before the first commit); the
 *   origin is the checkout's root, or the repository URL (without credentials) for a
 *   `--repo-url` project. It names HEAD; the content may carry uncommitted edits.
 * - Git never prompts (GIT_TERMINAL_PROMPT=0, stdin closed) and never writes to our stdout:
 *   the MCP server speaks on it.
 * - `--repo-url` clones live in `<PYRO_HOME>/projects/<sha256(url)>`, one per URL, made by a
 *   clone into a temp dir renamed into place, refreshed by `git fetch` on each start and
 *   checked out detached at REF (default: the remote's HEAD), all under a lock.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { packTree } from "../protocol/archive/pack.ts";
import { PyroError } from "../protocol/errors.ts";
import { withLock } from "./lock.ts";
import { locksDir } from "./paths.ts";

/** Where a server's project comes from (resolved once at startup by resolveProject). */
export type ProjectSource =
  /** a directory in a git checkout; `required: false` (startup in the cwd): outside any checkout means no project */
  { path: string; required?: boolean } | { repo_url: string; repo_ref?: string };

/** A resolved project: the checkout whose tracked files seed workspaces. */
export interface Project {
  /** the working tree's root (absolute) */
  root: string;
  /** what origin_ref names: the root, or the repository URL without credentials */
  origin: string;
}

export interface SkippedPath {
  path: string;
  reason: "missing" | "submodule" | "unreadable" | "not a regular file";
}

/** How many skipped paths a record lists (skipped_count has the total). */
export const SKIPPED_LIST_MAX = 100;

function git(args: string[], opts: { cwd?: string; what: string }): string {
  const p = Bun.spawnSync(["git", ...args], {
    cwd: opts.cwd,
    env: { ...process.env, GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  if (p.exitCode !== 0) {
    const why = p.stderr.toString().trim().split("\n").slice(-3).join("; ");
    throw new PyroError("INVALID_INPUT", `${opts.what}: ${why || `git exited with ${p.exitCode}`}`);
  }
  return p.stdout.toString();
}

/** The root of the git working tree containing `dir`, or null when it is in none. */
export function findCheckout(dir: string): string | null {
  if (!existsSync(dir)) throw new PyroError("FILE_NOT_FOUND", `no such directory: ${dir}`);
  try {
    const top = git(["rev-parse", "--show-toplevel"], { cwd: resolve(dir), what: dir }).trim();
    return top || null;
  } catch {
    return null;
  }
}

/** HEAD's commit, or null in a repository without commits. */
export function headCommit(root: string): string | null {
  try {
    return (
      git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], { cwd: root, what: root }).trim() || null
    );
  } catch {
    return null;
  }
}

/** A URL as it may be shown: user and password removed. */
export function displayUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, "$1");
}

/** The clone of `url` under PYRO_HOME, fetched and checked out at `ref` (default: the remote's HEAD). */
async function cloneProject(home: string, url: string, ref: string | undefined): Promise<string> {
  const key = createHash("sha256").update(url).digest("hex").slice(0, 32);
  const dir = join(home, "projects", key);
  const shown = displayUrl(url);
  return withLock(
    join(locksDir(home), `project-${key}.lock`),
    () => {
      if (!existsSync(join(dir, ".git"))) {
        mkdirSync(join(home, "projects"), { recursive: true, mode: 0o700 });
        const tmp = `${dir}.tmp-${process.pid}`;
        rmSync(tmp, { recursive: true, force: true });
        try {
          git(["clone", "--quiet", "--no-checkout", "--", url, tmp], { what: `cloning ${shown}` });
          rmSync(dir, { recursive: true, force: true });
          renameSync(tmp, dir);
        } finally {
          rmSync(tmp, { recursive: true, force: true });
        }
      } else {
        git(["fetch", "--quiet", "--tags", "--force", "origin"], { cwd: dir, what: `fetching ${shown}` });
        git(["remote", "set-head", "origin", "--auto"], { cwd: dir, what: `fetching ${shown}` });
      }
      const candidates = ref ? [`origin/${ref}`, ref] : ["origin/HEAD"];
      let commit: string | null = null;
      for (const c of candidates) {
        try {
          commit = git(["rev-parse", "--verify", "--quiet", `${c}^{commit}`], { cwd: dir, what: c }).trim();
          break;
        } catch {}
      }
      if (!commit)
        throw new PyroError(
          "INVALID_INPUT",
          `--repo-ref ${ref ?? "HEAD"}: no such branch, tag or commit in ${shown}`,
        );
      git(["checkout", "--quiet", "--force", "--detach", commit], {
        cwd: dir,
        what: `checking out ${commit}`,
      });
      return dir;
    },
    300_000,
  );
}

/**
 * Resolve a server's project source once, at startup. A `path` must lie in a git checkout
 * (INVALID_INPUT otherwise) unless `required: false`, which gives null there.
 */
export async function resolveProject(home: string, source: ProjectSource): Promise<Project | null> {
  if ("repo_url" in source) {
    const root = await cloneProject(home, source.repo_url, source.repo_ref);
    return { root, origin: displayUrl(source.repo_url) };
  }
  const root = findCheckout(source.path);
  if (root) return { root, origin: root };
  if (source.required === false) return null;
  throw new PyroError("INVALID_INPUT", `--project-path ${source.path}: not inside a git checkout`, {
    hint: "give a directory of a git working tree, or --repo-url URL",
  });
}

export interface ProjectSeed {
  origin_ref: string;
  /** the first SKIPPED_LIST_MAX skipped paths */
  skipped: SkippedPath[];
  skipped_count: number;
  /** the tar stream of the tracked files (lazy: nothing is read until it is pulled) */
  pack(): ReadableStream<Uint8Array>;
}

/** What `git ls-files` tracks in `root` and can be seeded, as a tar stream; see the header. */
export function projectSeed(project: Project): ProjectSeed {
  const { root } = project;
  const commit = headCommit(root);
  const out = git(["ls-files", "-z", "--stage"], { cwd: root, what: `listing ${root}` });
  const files = new Set<string>();
  const dirs = new Set<string>();
  const skipped: SkippedPath[] = [];
  const seen = new Set<string>();
  for (const line of out.split("\0")) {
    if (!line) continue;
    const tab = line.indexOf("\t");
    const mode = line.slice(0, line.indexOf(" "));
    const path = line.slice(tab + 1);
    if (seen.has(path)) continue; // a conflicted path is listed once per stage
    seen.add(path);
    const reason = mode === "160000" ? "submodule" : unseedable(join(root, path));
    if (reason) {
      skipped.push({ path, reason });
      continue;
    }
    files.add(path);
    for (let i = path.indexOf("/"); i > 0; i = path.indexOf("/", i + 1)) dirs.add(path.slice(0, i));
  }
  return {
    origin_ref: commit ? `${project.origin}@${commit}` : project.origin,
    skipped: skipped.slice(0, SKIPPED_LIST_MAX),
    skipped_count: skipped.length,
    pack: () => packTree(root, "", { exclude: (rel) => !files.has(rel) && !dirs.has(rel) }),
  };
}

/** Why a tracked path cannot be seeded, or null when it can. */
function unseedable(path: string): SkippedPath["reason"] | null {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch {
    return "missing";
  }
  if (st.isSymbolicLink()) return null;
  if (!st.isFile()) return "not a regular file"; // fifo, socket, device, or a directory where a file was tracked
  try {
    closeSync(openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK));
  } catch {
    return "unreadable";
  }
  return null;
}
