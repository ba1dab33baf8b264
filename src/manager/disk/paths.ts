/**
 * User paths on an offline workspace disk. The guest sees `/workspace/x`; on the disk that
 * is `/upper/workspace/x` (the overlay's upper layer: /workspace is empty in every image,
 * so everything under it lives in the upper layer).
 *
 * Resolution mirrors the guest's (guest/paths.ts) and the kernel's: components are walked
 * left to right on the disk's directories, ".." pops, and symlinks are expanded in place
 * (relative targets against the link's directory, absolute ones as guest paths, which must
 * be /workspace or below). Any step leaving /workspace is PATH_OUTSIDE_WORKSPACE. Overlay
 * whiteouts (character devices 0/0) read as "does not exist". Unlike the guest, a missing
 * component is FILE_NOT_FOUND at once: nothing here creates files.
 */
import { PyroError } from "../../protocol/errors.ts";
import {
  type DiskReader,
  type Inode,
  isWhiteout,
  type LsEntry,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
} from "./debugfs.ts";

export { outside, showPath, userPathParts } from "../../protocol/paths.ts";

import { outside, showPath, userPathParts, WORKSPACE_DISPLAY_ROOT } from "../../protocol/paths.ts";

export const WORKSPACE_ROOT = WORKSPACE_DISPLAY_ROOT;
/** where /workspace lives on the disk, from the disk's root directory */
export const UPPER_WORKSPACE = ["upper", "workspace"] as const;
const ROOT_INO = 2;
const MAX_SYMLINKS = 40;

export const toBytes = (s: string) => Buffer.from(s, "utf8").toString("latin1");
export const fromBytes = (b: string) => Buffer.from(b, "latin1").toString("utf8");

export function notFound(shown: string): PyroError {
  return new PyroError("FILE_NOT_FOUND", `no such file or directory: ${shown}`, { details: { path: shown } });
}

export function displayOf(names: string[]): string {
  return names.length ? `${WORKSPACE_ROOT}/${names.join("/")}` : WORKSPACE_ROOT;
}

/** A directory entry found on the disk, with its type from the directory listing. */
export interface Found {
  /** 0 only for /workspace itself on a disk that has no /upper/workspace (empty) */
  ino: number;
  mode: number;
  /** display names (UTF-8) from /workspace down to this entry */
  names: string[];
}

export const typeOf = (mode: number) => mode & S_IFMT;

/** Look a raw name up in a directory; whiteouts count as absent. */
async function lookup(disk: DiskReader, dir: number, rawName: string): Promise<LsEntry | undefined> {
  const hit = (await disk.ls(dir)).find((e) => e.name === rawName);
  if (!hit) return undefined;
  if (typeOf(hit.mode) === S_IFCHR && isWhiteout(await disk.inode(hit.ino, hit.mode))) return undefined;
  return hit;
}

/**
 * The inode of /workspace on the disk, or undefined when the guest never created anything
 * there (fresh disk, or /workspace deleted). A /workspace that is not a directory is
 * NOT_A_DIRECTORY.
 */
export async function workspaceRoot(disk: DiskReader): Promise<number | undefined> {
  let dir = ROOT_INO;
  for (const name of UPPER_WORKSPACE) {
    const e = await lookup(disk, dir, name);
    if (!e) return undefined;
    if (typeOf(e.mode) !== S_IFDIR) {
      throw new PyroError("NOT_A_DIRECTORY", `${WORKSPACE_ROOT} on this disk is not a directory`, {
        details: { path: WORKSPACE_ROOT },
      });
    }
    dir = e.ino;
  }
  return dir;
}

/** Resolve a user path on the disk (see the module comment). */
export async function resolve(
  disk: DiskReader,
  userPath: string,
  opts: { followFinalSymlink: boolean },
): Promise<Found> {
  const shown = showPath(userPath);
  const queue = userPathParts(userPath);
  const root = await workspaceRoot(disk);
  const stack: Found[] = [];
  let links = 0;
  const here = (): Found => stack.at(-1) ?? { ino: root ?? 0, mode: S_IFDIR | 0o755, names: [] };

  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === "." || part === "") continue;
    if (part === "..") {
      if (stack.pop() === undefined) throw outside(shown);
      continue;
    }
    const parent = here();
    if (root === undefined) throw notFound(shown);
    if (typeOf(parent.mode) !== S_IFDIR) {
      throw new PyroError("NOT_A_DIRECTORY", `not a directory: ${shown}`, { details: { path: shown } });
    }
    const e = await lookup(disk, parent.ino, toBytes(part));
    if (!e) throw notFound(shown);
    const isFinal = queue.every((p) => p === "" || p === ".");
    if (typeOf(e.mode) === S_IFLNK && (!isFinal || opts.followFinalSymlink)) {
      if (++links > MAX_SYMLINKS) {
        throw new PyroError("INVALID_INPUT", `too many levels of symbolic links: ${shown}`, {
          details: { path: shown },
        });
      }
      const target = fromBytes(await disk.readlink(await disk.inode(e.ino, e.mode)));
      if (target === "") throw notFound(shown);
      if (target.startsWith("/")) {
        // absolute targets are guest paths: only /workspace and below stay inside
        const squeezed = target.replace(/\/+/g, "/");
        if (squeezed !== WORKSPACE_ROOT && !squeezed.startsWith(`${WORKSPACE_ROOT}/`)) throw outside(shown);
        stack.length = 0;
        queue.unshift(...squeezed.slice(WORKSPACE_ROOT.length).split("/"));
      } else {
        queue.unshift(...target.split("/"));
      }
      continue;
    }
    stack.push({ ino: e.ino, mode: e.mode, names: [...parent.names, fromBytes(e.name)] });
  }
  if (root === undefined) return { ino: 0, mode: S_IFDIR | 0o755, names: [] };
  return here();
}

export type { Inode };
