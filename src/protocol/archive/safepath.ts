/**
 * Walking down from a trusted root without ever following a symlink, and without handing a
 * path string back to the kernel: the root is opened once, and every level below is opened
 * with openat(parent_fd, name, O_PATH|O_NOFOLLOW) and fstat'ed (../openat.ts). Entries are
 * then created, renamed and removed relative to the directory fd that was checked, so a
 * process inside the root that swaps a directory for a symlink to /etc mid-operation makes
 * the operation fail (a symlink is refused, O_NOFOLLOW gives ELOOP) or act on the directory
 * that was checked, never follow the swap. (A directory moved elsewhere after we opened it
 * is still written through its fd: only by someone who could write there already.)
 */
import { PyroError } from "../errors.ts";
import { AT_FDCWD, closeFd, lookupAt, mkdirat, O, openat } from "../openat.ts";
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

/** At most this many directory fds are cached; past it the cache starts over from the root. */
const MAX_CACHED_DIRS = 64;

/**
 * Directory fds below one root, opened level by level without following symlinks and
 * cached by root-relative path ("" is the root) so consecutive archive entries in one
 * directory cost no walk. The owner closes it (close()) when done, normally in a finally;
 * forget() drops a directory that was removed or replaced.
 */
export class DirFds {
  private readonly fds = new Map<string, number>();

  /** `root` is trusted and opened as given (symlinks in it followed), once. */
  constructor(root: string, shown: string) {
    let fd: number;
    try {
      fd = openat(AT_FDCWD, root, O.PATH | O.DIRECTORY);
    } catch (err) {
      const e = fsError(err, shown);
      throw e.code === "NOT_A_DIRECTORY"
        ? new PyroError("NOT_A_DIRECTORY", `${shown} is not a directory`)
        : e;
    }
    this.fds.set("", fd);
  }

  get root(): number {
    return this.fds.get("")!;
  }

  /**
   * The fd of root/parts[0]/.../parts[n-1], each component checked to be a real directory
   * (a symlink, wherever it points, is PATH_OUTSIDE_WORKSPACE). Missing components are
   * created (mode 0755 less umask) when `create`, else FILE_NOT_FOUND. `shown` names the
   * operation's subject in errors. The fd belongs to the cache: do not close it; it stays
   * open until forget(), trim() or close().
   */
  dir(parts: PathParts, create: boolean, shown: string): number {
    let i = parts.length;
    while (i > 0 && !this.fds.has(parts.slice(0, i).join("/"))) i--;
    let fd = this.fds.get(parts.slice(0, i).join("/"))!;
    for (; i < parts.length; i++) {
      const sub = parts.slice(0, i + 1).join("/");
      fd = openDirAt(fd, parts[i]!, create, shown, sub);
      this.fds.set(sub, fd);
    }
    return fd;
  }

  /** Drop (and close) the cached fds of root/parts and everything below it. */
  forget(parts: PathParts): void {
    if (parts.length === 0) return;
    const key = parts.join("/");
    for (const [k, fd] of this.fds) {
      if (k === key || k.startsWith(`${key}/`)) {
        closeFd(fd);
        this.fds.delete(k);
      }
    }
  }

  /**
   * Bound the cache: past MAX_CACHED_DIRS, close all but the root. Call it only where no
   * fd from dir() is still in use (unpack calls it between entries).
   */
  trim(): void {
    if (this.fds.size <= MAX_CACHED_DIRS) return;
    for (const [k, fd] of this.fds) {
      if (k !== "") {
        closeFd(fd);
        this.fds.delete(k);
      }
    }
  }

  close(): void {
    for (const fd of this.fds.values()) closeFd(fd);
    this.fds.clear();
  }
}

/** An O_PATH fd of the real directory `name` in `dir`, created first if missing and `create`. */
function openDirAt(dir: number, name: string, create: boolean, shown: string, sub: string): number {
  for (let attempt = 0; ; attempt++) {
    const found = lookupAt(dir, name, shown);
    if (!found) {
      // a second miss means something removes it as fast as we create it
      if (!create || attempt > 0) throw fsError({ code: "ENOENT" }, shown);
      try {
        mkdirat(dir, name, 0o755);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw fsError(err, shown);
      }
      continue;
    }
    if (found.st.isDirectory()) return found.fd;
    closeFd(found.fd);
    if (found.st.isSymbolicLink()) {
      throw new PyroError(
        "PATH_OUTSIDE_WORKSPACE",
        `${shown}: refusing to go through the symbolic link "${sub}"`,
        { details: { path: shown, symlink: sub } },
      );
    }
    throw new PyroError("NOT_A_DIRECTORY", `${shown}: "${sub}" is not a directory`, {
      details: { path: shown },
    });
  }
}

/** What `name` in `dir` is now (lstat-like), or undefined if missing; no fd is kept. */
export function statAt(dir: number, name: string, shown: string) {
  const found = lookupAt(dir, name, shown);
  if (!found) return undefined;
  closeFd(found.fd);
  return found.st;
}

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
