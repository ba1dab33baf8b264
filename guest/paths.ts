/**
 * User paths → real paths under the workspace root. Users (and models) always see the root
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
 */
import { lstat, readlink, realpath } from "node:fs/promises";
import { fsError } from "../src/protocol/archive/index.ts";
import { PyroError } from "../src/protocol/errors.ts";

export { outside, showPath, userPathParts, WORKSPACE_DISPLAY_ROOT } from "../src/protocol/paths.ts";

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

/** The root's canonical path: every path we hand out is under it. */
export async function realRoot(root: string): Promise<string> {
  return realpath(root).catch((err) => {
    throw fsError(err, WORKSPACE_DISPLAY_ROOT);
  });
}

export async function resolveInRoot(
  root: string,
  userPath: string,
  opts: { followFinalSymlink: boolean },
): Promise<string> {
  const shown = showPath(userPath);
  const rootReal = await realRoot(root);
  const queue = userPathParts(userPath);
  const stack: string[] = [];
  let links = 0;
  let missing = false;
  const here = () => (stack.length ? `${rootReal === "/" ? "" : rootReal}/${stack.join("/")}` : rootReal);

  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === "." || part === "") continue;
    if (part === "..") {
      if (stack.pop() === undefined) throw outside(shown);
      continue;
    }
    stack.push(part);
    if (missing) continue; // below a missing component everything is lexical
    const isFinal = queue.every((p) => p === "" || p === ".");
    const st = await lstat(here()).catch((err) => {
      if (err?.code === "ENOENT") return undefined;
      throw fsError(err, shown);
    });
    if (!st) {
      missing = true;
      continue;
    }
    if (st.isSymbolicLink() && (!isFinal || opts.followFinalSymlink)) {
      if (++links > MAX_SYMLINKS) {
        throw new PyroError("INVALID_INPUT", `too many levels of symbolic links: ${shown}`, {
          details: { path: shown },
        });
      }
      const target = await readlink(here()).catch((err) => {
        throw fsError(err, shown);
      });
      stack.pop();
      if (target.startsWith("/")) {
        const base = rootReal === "/" ? "/" : `${rootReal}/`;
        if (target !== rootReal && !`${target}/`.startsWith(base)) throw outside(shown);
        stack.length = 0;
        queue.unshift(...target.slice(rootReal.length).split("/"));
      } else {
        queue.unshift(...target.split("/"));
      }
      continue;
    }
    if (!isFinal && !st.isDirectory()) {
      throw new PyroError("NOT_A_DIRECTORY", `not a directory: ${shown}`, { details: { path: shown } });
    }
  }
  return here();
}
