/**
 * Walking down from a trusted root without ever following a symlink: every parent is
 * lstat'ed component by component (the userspace equivalent of openat + O_NOFOLLOW on each
 * step), and the final open/rename uses O_NOFOLLOW or replaces the link itself. A process
 * racing us inside the root could still swap a checked directory for a link between the
 * lstat and the use; that is accepted (in a guest it only reaches the VM itself, and the
 * host backend has no isolation to protect).
 */
import { constants as C } from "node:fs";
import { lstat, mkdir } from "node:fs/promises";
import { PyroError } from "../errors.ts";
import { fsError } from "./fserror.ts";

export type PathParts = string[];

/**
 * Split a relative "/"-path into components, dropping "" and ".". Absolute paths and any
 * ".." are refused: callers pass archive names or root-relative paths, never user input
 * that still needs resolving.
 */
export function relativeParts(path: string, shown: string): PathParts {
  if (path.startsWith("/")) {
    throw new PyroError("PATH_OUTSIDE_WORKSPACE", `${shown} is an absolute path`, {
      details: { path: shown },
    });
  }
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) {
    throw new PyroError("PATH_OUTSIDE_WORKSPACE", `${shown} contains a ".." component`, {
      details: { path: shown },
    });
  }
  return parts;
}

export function joinParts(root: string, parts: PathParts): string {
  if (parts.length === 0) return root;
  return root === "/" ? `/${parts.join("/")}` : `${root}/${parts.join("/")}`;
}

/**
 * The real directory root/parts[0]/.../parts[n-1], each component checked to be a real
 * directory (not a symlink). Missing components are created (mode 0755 less umask) when
 * `create`, else FILE_NOT_FOUND. `shown` names the operation's subject in errors.
 */
export async function ensureDirChain(
  root: string,
  parts: PathParts,
  create: boolean,
  shown: string,
): Promise<string> {
  let cur = root;
  for (let i = 0; i < parts.length; i++) {
    const next = cur === "/" ? `/${parts[i]}` : `${cur}/${parts[i]}`;
    let st = await lstat(next).catch((err) => {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw fsError(err, shown);
    });
    if (!st) {
      if (!create) throw fsError(Object.assign(new Error("ENOENT"), { code: "ENOENT" }), shown);
      await mkdir(next, 0o755).catch((err) => {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw fsError(err, shown);
      });
      st = await lstat(next).catch((err) => {
        throw fsError(err, shown);
      });
    }
    const sub = parts.slice(0, i + 1).join("/");
    if (st.isSymbolicLink()) {
      throw new PyroError(
        "PATH_OUTSIDE_WORKSPACE",
        `${shown}: refusing to write through the symbolic link "${sub}"`,
        { details: { path: shown, symlink: sub } },
      );
    }
    if (!st.isDirectory()) {
      throw new PyroError("NOT_A_DIRECTORY", `${shown}: "${sub}" is not a directory`, {
        details: { path: shown },
      });
    }
    cur = next;
  }
  return cur;
}

/** Flags for creating a fresh temp file that can never be an existing file or a link. */
export const CREATE_EXCL = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;

/** A hidden, short (NAME_MAX-safe) sibling name for write-then-rename. */
export function tempName(): string {
  const r = crypto.getRandomValues(new Uint8Array(8));
  return `.pyro-tmp-${Array.from(r, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Write all of `data` (FileHandle.write may write less than asked). */
export async function writeAll(
  fh: { write(b: Uint8Array, o: number, l: number): Promise<{ bytesWritten: number }> },
  data: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off);
    off += bytesWritten;
  }
}

/** setuid/setgid never survive a transfer or a write. */
export function safeMode(mode: number): number {
  return mode & 0o1777;
}
