/**
 * User paths → locations under the workspace root. Users (and models) always see the root
 * as `/workspace`, even in host-compat mode where the real root is some host directory; the
 * real location never appears in results or error messages.
 *
 * Resolution mirrors the kernel's: components are walked left to right, ".." pops, and each
 * symlink met is read and expanded in place (relative targets against the directory holding
 * the link, absolute targets as real absolute paths). Any step that would leave the root is
 * PATH_OUTSIDE_WORKSPACE, so a symlink pointing inside the workspace is fine to traverse
 * and one pointing out is not. The final component is followed only when asked (stat,
 * remove and move act on a link itself). Components that do not exist yet are appended
 * lexically, so a path to be created resolves too.
 *
 * Race freedom: the walk never hands a path string back to the kernel. It starts from an
 * fd of the root and opens each component with openat(dir_fd, name, O_PATH|O_NOFOLLOW)
 * (openat.ts), fstat()s what it got, reads a symlink with readlinkat on the link's own fd
 * and re-walks its target from the fd it applies to, and keeps an fd for every directory
 * on the way. Callers operate relative to those fds (`Resolved`), so a process that swaps
 * a directory for a symlink to /etc between our check and our use makes the operation
 * fail (ELOOP/ENOTDIR/ENOENT) or act on the directory we checked, never follow the swap.
 * ".." pops back to the fd we came from (the parent as we walked it), never `openat("..")`.
 * Parents created for a write are made with mkdirat and reopened O_NOFOLLOW|O_DIRECTORY.
 */
import { fstatSync, type Stats } from "node:fs";
import { realpath } from "node:fs/promises";
import { fsError } from "../src/protocol/archive/index.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { AT_FDCWD, closeFd, lookupAt, mkdirat, O, openat, readlinkat } from "../src/protocol/openat.ts";

export { outside, showPath, userPathParts, WORKSPACE_DISPLAY_ROOT } from "../src/protocol/paths.ts";
export { lookupAt };

import { outside, showPath, userPathParts, WORKSPACE_DISPLAY_ROOT } from "../src/protocol/paths.ts";

/** Linux's MAXSYMLINKS */
const MAX_SYMLINKS = 40;

/** `/workspace/...` for a real path under the (real) root; refuses anything else. */
export function displayPath(root: string, realPath: string): string {
  if (realPath === root) return WORKSPACE_DISPLAY_ROOT;
  const base = root.endsWith("/") ? root : `${root}/`;
  if (!realPath.startsWith(base)) throw outside("(path outside the workspace)");
  return `${WORKSPACE_DISPLAY_ROOT}/${realPath.slice(base.length)}`;
}

/** `/workspace/...` for root-relative components. */
export function showParts(parts: readonly string[]): string {
  return parts.length ? `${WORKSPACE_DISPLAY_ROOT}/${parts.join("/")}` : WORKSPACE_DISPLAY_ROOT;
}

/** The root's canonical path: every path we hand out is under it. */
export async function realRoot(root: string): Promise<string> {
  return realpath(root).catch((err) => {
    throw fsError(err, WORKSPACE_DISPLAY_ROOT);
  });
}

const enoent = () => Object.assign(new Error("ENOENT"), { code: "ENOENT" });

/**
 * A resolved user path, holding fds for the existing part of it: `fds[i]` is the directory
 * (or, for the last one, whatever object) reached by `parts.slice(0, i)`; `fds[0]` is the
 * root. Components past the existing prefix have no fd yet. Owner must close().
 */
export class Resolved {
  constructor(
    readonly rootReal: string,
    readonly parts: string[],
    readonly fds: number[],
  ) {}

  get shown(): string {
    return showParts(this.parts);
  }
  /** the real path (for exec's cwd and as a map key; never reopened by the file ops) */
  get real(): string {
    if (this.parts.length === 0) return this.rootReal;
    return `${this.rootReal === "/" ? "" : this.rootReal}/${this.parts.join("/")}`;
  }
  get isRoot(): boolean {
    return this.parts.length === 0;
  }
  get name(): string {
    return this.parts.at(-1) ?? "";
  }
  /** the final object's O_PATH fd, if it existed when resolved */
  get fd(): number | undefined {
    return this.fds.length === this.parts.length + 1 ? this.fds.at(-1) : undefined;
  }
  /** what the final object was when resolved (lstat-like: a kept final link is the link) */
  stat(): Stats | undefined {
    const fd = this.fd;
    return fd === undefined ? undefined : fstatSync(fd);
  }

  /**
   * The fd of the directory that holds the final component. Missing parents are created
   * (mode 0755 less umask) when `create`, each one reopened O_NOFOLLOW|O_DIRECTORY, and
   * their root-relative paths pushed on `created`; else FILE_NOT_FOUND.
   */
  parentFd(create: boolean, created?: string[][]): number {
    const want = this.parts.length - 1; // the parent is fds[want]
    if (want < 0) throw fsError({ code: "EISDIR" }, this.shown);
    while (this.fds.length <= want) {
      const i = this.fds.length - 1;
      const dir = this.fds[i]!;
      const name = this.parts[i]!;
      if (!create) throw fsError(enoent(), this.shown);
      try {
        mkdirat(dir, name, 0o755);
        created?.push(this.parts.slice(0, i + 1));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw fsError(err, this.shown);
      }
      try {
        this.fds.push(openat(dir, name, O.PATH | O.NOFOLLOW | O.DIRECTORY));
      } catch (err) {
        throw fsError(err, this.shown);
      }
    }
    return this.fds[want]!;
  }

  close(): void {
    for (const fd of this.fds.splice(0)) closeFd(fd);
  }
}

/** Run fn with the resolved path, closing its fds afterwards. */
export async function withResolved<T>(
  root: string,
  userPath: string,
  opts: { followFinalSymlink: boolean },
  fn: (r: Resolved) => Promise<T> | T,
): Promise<T> {
  const r = await resolvePath(root, userPath, opts);
  try {
    return await fn(r);
  } finally {
    r.close();
  }
}

export async function resolvePath(
  root: string,
  userPath: string,
  opts: { followFinalSymlink: boolean },
): Promise<Resolved> {
  const shown = showPath(userPath);
  const rootReal = await realRoot(root);
  const queue = userPathParts(userPath);
  let rootFd: number;
  try {
    rootFd = openat(AT_FDCWD, rootReal, O.PATH | O.DIRECTORY);
  } catch (err) {
    throw fsError(err, WORKSPACE_DISPLAY_ROOT);
  }
  // names below the root; fd only while the walk is on existing objects
  const stack: { name: string; fd?: number }[] = [];
  const closeAll = () => {
    for (const e of stack.splice(0)) closeFd(e.fd);
  };
  let links = 0;
  try {
    while (queue.length > 0) {
      const part = queue.shift()!;
      if (part === "." || part === "") continue;
      if (part === "..") {
        const e = stack.pop();
        if (e === undefined) throw outside(shown);
        closeFd(e.fd);
        continue;
      }
      const dir = stack.length ? stack.at(-1)!.fd : rootFd;
      if (dir === undefined) {
        stack.push({ name: part }); // below a missing component everything is lexical
        continue;
      }
      const found = lookupAt(dir, part, shown);
      if (!found) {
        stack.push({ name: part });
        continue;
      }
      const isFinal = queue.every((p) => p === "" || p === ".");
      if (found.st.isSymbolicLink() && (!isFinal || opts.followFinalSymlink)) {
        let target: string;
        try {
          target = readlinkat(found.fd, "");
        } catch (err) {
          throw fsError(err, shown);
        } finally {
          closeFd(found.fd);
        }
        if (++links > MAX_SYMLINKS) {
          throw new PyroError("INVALID_INPUT", `too many levels of symbolic links: ${shown}`, {
            details: { path: shown },
          });
        }
        if (target.startsWith("/")) {
          const base = rootReal === "/" ? "/" : `${rootReal}/`;
          if (target !== rootReal && !`${target}/`.startsWith(base)) throw outside(shown);
          closeAll();
          queue.unshift(...target.slice(rootReal.length).split("/"));
        } else {
          queue.unshift(...target.split("/"));
        }
        continue;
      }
      stack.push({ name: part, fd: found.fd });
      if (!isFinal && !found.st.isDirectory()) {
        throw new PyroError("NOT_A_DIRECTORY", `not a directory: ${shown}`, { details: { path: shown } });
      }
    }
  } catch (err) {
    closeAll();
    closeFd(rootFd);
    throw err;
  }
  const fds = [rootFd];
  for (const e of stack) {
    if (e.fd === undefined) break;
    fds.push(e.fd);
  }
  return new Resolved(
    rootReal,
    stack.map((e) => e.name),
    fds,
  );
}

/** The real path a user path resolves to (for exec's cwd: a path is all a process takes). */
export async function resolveInRoot(
  root: string,
  userPath: string,
  opts: { followFinalSymlink: boolean },
): Promise<string> {
  return withResolved(root, userPath, opts, (r) => r.real);
}
