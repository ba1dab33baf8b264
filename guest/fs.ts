/**
 * File operations on the workspace root. Every path goes through resolvePath (symlinks
 * that lead outside are PATH_OUTSIDE_WORKSPACE), results are plain snake_case objects, and
 * errors name `/workspace/...` paths only. Every operation acts relative to the directory
 * fds the resolution opened (openat/mkdirat/unlinkat/renameat, never a path string), so a
 * concurrent directory↔symlink swap cannot redirect it outside (see paths.ts).
 *
 * Symlink policy: links inside the workspace are followed on the way to a target (as a
 * shell would); stat, remove and move act on a final symlink itself; read, write, list and
 * mkdir follow a final symlink only if it stays inside. Writes never go *into* an existing
 * inode: they create a temp sibling (O_EXCL|O_NOFOLLOW) and rename it over the target, so a
 * hardlink to something outside the workspace is replaced rather than modified.
 *
 * Caps (src/protocol/limits.ts): read max_bytes <= 16 MiB (larger requests are INVALID_INPUT;
 * read the rest with offset); write <= 16 MiB (FILE_TOO_LARGE); list max_entries <= 100,000.
 */
import {
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  readdirSync,
  readSync,
  type Stats,
  writeSync,
} from "node:fs";
import { readdir } from "node:fs/promises";
import { fsError, safeMode, tempName } from "../src/protocol/archive/index.ts";
import { PyroError } from "../src/protocol/errors.ts";
import {
  LIST_DEFAULT_ENTRIES,
  LIST_MAX_ENTRIES,
  READ_DEFAULT_BYTES,
  READ_MAX_BYTES,
  WRITE_MAX_BYTES,
} from "../src/protocol/limits.ts";
import {
  AT_REMOVEDIR,
  closeFd,
  fdPath,
  mkdirat,
  O,
  openat,
  readlinkat,
  renameat,
  unlinkat,
} from "../src/protocol/openat.ts";
import { lookupAt, type Resolved, showParts, withResolved } from "./paths.ts";

export type ArtifactType = "file" | "directory" | "symlink" | "other";

export type FileStat = {
  path: string;
  artifact_type: ArtifactType;
  size_bytes: number;
  /** permission bits as 4 octal digits, e.g. "0644" */
  mode: string;
  mtime: string;
  link_target?: string;
};

function artifactType(st: Stats): ArtifactType {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "directory";
  if (st.isSymbolicLink()) return "symlink";
  return "other";
}

/** Describe the object behind an O_PATH|O_NOFOLLOW fd (a link is described as the link). */
function describeFd(fd: number, parts: readonly string[], st: Stats = fstatSync(fd)): FileStat {
  const out: FileStat = {
    path: showParts(parts),
    artifact_type: artifactType(st),
    size_bytes: st.size,
    mode: (st.mode & 0o7777).toString(8).padStart(4, "0"),
    mtime: st.mtime.toISOString(),
  };
  if (st.isSymbolicLink()) {
    try {
      out.link_target = readlinkat(fd, "");
    } catch {
      out.link_target = "";
    }
  }
  return out;
}

/** Describe `name` in `dirFd` as it is now. */
function describeAt(dirFd: number, name: string, parts: readonly string[]): FileStat {
  const shown = showParts(parts);
  const found = lookupAt(dirFd, name, shown);
  if (!found) throw fsError({ code: "ENOENT" }, shown);
  try {
    return describeFd(found.fd, parts, found.st);
  } finally {
    closeFd(found.fd);
  }
}

function intOption(value: number | undefined, dflt: number, min: number, max: number, name: string): number {
  const v = value ?? dflt;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new PyroError("INVALID_INPUT", `${name} must be an integer from ${min} to ${max}`);
  }
  return v;
}

/** The final object's fd and stat; FILE_NOT_FOUND when it did not exist. */
function existing(r: Resolved): { fd: number; st: Stats } {
  const fd = r.fd;
  if (fd === undefined) throw fsError({ code: "ENOENT" }, r.shown);
  return { fd, st: fstatSync(fd) };
}

/** Run a syscall-level step, mapping its errno onto `shown`. */
function at<T>(shown: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fsError(err, shown);
  }
}

export async function statPath(root: string, path: string): Promise<FileStat> {
  return withResolved(root, path, { followFinalSymlink: false }, (r) => {
    const { fd, st } = existing(r);
    return describeFd(fd, r.parts, st);
  });
}

export async function listPath(
  root: string,
  path: string,
  opts: { recursive?: boolean; maxEntries?: number } = {},
): Promise<{ path: string; entries: FileStat[]; truncated: boolean }> {
  const max = intOption(opts.maxEntries, LIST_DEFAULT_ENTRIES, 1, LIST_MAX_ENTRIES, "max_entries");
  return withResolved(root, path, { followFinalSymlink: true }, async (r) => {
    const { fd, st } = existing(r);
    const shown = r.shown;
    if (!st.isDirectory())
      throw new PyroError("NOT_A_DIRECTORY", `not a directory: ${shown}`, { details: { path: shown } });

    // Depth-first with sorted names: each directory's contents follow it, and the first
    // max entries are the same ones every time. Each directory is held by an fd reached
    // with O_NOFOLLOW from its parent's fd and listed through that fd.
    const entries: FileStat[] = [];
    const stack: { fd: number; parts: string[]; names: string[]; next: number; own: boolean }[] = [];
    const push = async (dirFd: number, parts: string[], own: boolean) => {
      const names = await readdir(fdPath(dirFd)).catch((err) => {
        if (own) closeFd(dirFd);
        return Promise.reject(fsError(err, showParts(parts)));
      });
      stack.push({ fd: dirFd, parts, names: names.sort(), next: 0, own });
    };
    let truncated = false;
    try {
      await push(fd, r.parts, false);
      while (stack.length > 0) {
        const top = stack.at(-1)!;
        if (top.next >= top.names.length) {
          stack.pop();
          if (top.own) closeFd(top.fd);
          continue;
        }
        const name = top.names[top.next++]!;
        const parts = [...top.parts, name];
        let found: ReturnType<typeof lookupAt>;
        try {
          found = lookupAt(top.fd, name, showParts(parts));
        } catch {
          continue; // unreadable or vanished meanwhile: skip
        }
        if (!found) continue;
        if (entries.length >= max) {
          closeFd(found.fd);
          truncated = true;
          break;
        }
        entries.push(describeFd(found.fd, parts, found.st));
        // never descends through symlinks: the fd is the directory itself
        if (opts.recursive && found.st.isDirectory()) await push(found.fd, parts, true);
        else closeFd(found.fd);
      }
    } finally {
      for (const e of stack) if (e.own) closeFd(e.fd);
    }
    return { path: shown, entries, truncated };
  });
}

export type ReadResult = {
  path: string;
  size_bytes: number;
  content: Uint8Array;
  truncated: boolean;
  encoding_hint: "utf8" | "binary";
};

export async function readFile(
  root: string,
  path: string,
  opts: { maxBytes?: number; offset?: number } = {},
): Promise<ReadResult> {
  const maxBytes = intOption(opts.maxBytes, READ_DEFAULT_BYTES, 0, READ_MAX_BYTES, "max_bytes");
  const offset = intOption(opts.offset, 0, 0, Number.MAX_SAFE_INTEGER, "offset");
  return withResolved(root, path, { followFinalSymlink: true }, (r) => {
    const shown = r.shown;
    // check the type first: opening a fifo or device could block or have side effects
    const { st } = existing(r);
    if (st.isDirectory()) throw fsError({ code: "EISDIR" }, shown);
    if (!st.isFile())
      throw new PyroError("INVALID_INPUT", `not a regular file: ${shown}`, { details: { path: shown } });
    const parent = r.parentFd(false);
    const fd = at(shown, () => openat(parent, r.name, O.RDONLY | O.NOFOLLOW | O.NONBLOCK));
    try {
      const fst = fstatSync(fd);
      if (!fst.isFile()) throw new PyroError("INVALID_INPUT", `not a regular file: ${shown}`);
      const want = Math.max(0, Math.min(maxBytes, fst.size - offset));
      const buf = new Uint8Array(want);
      let got = 0;
      while (got < want) {
        const n = readSync(fd, buf, got, want - got, offset + got);
        if (n === 0) break; // shrank meanwhile
        got += n;
      }
      const content = buf.subarray(0, got);
      const truncated = offset + got < fst.size;
      return {
        path: shown,
        size_bytes: fst.size,
        content,
        truncated,
        encoding_hint: encodingHint(content, truncated, offset > 0),
      };
    } catch (err) {
      throw fsError(err, shown);
    } finally {
      closeFd(fd);
    }
  });
}

export { encodingHint } from "../src/protocol/encoding.ts";

import { encodingHint } from "../src/protocol/encoding.ts";

/**
 * Write `data` as a new file beside `name` in `dirFd` (O_EXCL|O_NOFOLLOW temp, fsync) and
 * rename it over `name`. `owner` is the file being replaced, whose uid/gid are kept.
 */
export function replaceAt(dirFd: number, name: string, data: Uint8Array, mode: number, owner?: Stats): void {
  const tmp = tempName();
  const fd = openat(dirFd, tmp, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
  try {
    try {
      let off = 0;
      while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off);
      fchmodSync(fd, mode);
      // keep the owner of the file being replaced (the agent may run as root)
      if (owner?.isFile()) {
        try {
          fchownSync(fd, owner.uid, owner.gid);
        } catch {
          // not permitted: the writer owns it
        }
      }
      fsyncSync(fd);
    } finally {
      closeFd(fd);
    }
    renameat(dirFd, tmp, dirFd, name);
  } catch (err) {
    try {
      unlinkat(dirFd, tmp);
    } catch {
      // never created or already renamed
    }
    throw err;
  }
}

export async function writeFile(
  root: string,
  path: string,
  data: Uint8Array,
  opts: { mode?: number; createParents?: boolean; maxBytes?: number } = {},
): Promise<FileStat> {
  const maxBytes = intOption(opts.maxBytes, WRITE_MAX_BYTES, 0, WRITE_MAX_BYTES, "max_bytes");
  if (opts.mode !== undefined) intOption(opts.mode, 0, 0, 0o7777, "mode");
  return withResolved(root, path, { followFinalSymlink: true }, (r) => {
    const shown = r.shown;
    if (data.byteLength > maxBytes) {
      throw new PyroError(
        "FILE_TOO_LARGE",
        `write of ${data.byteLength} bytes exceeds ${maxBytes}: ${shown}`,
        {
          details: { path: shown, limit: maxBytes },
        },
      );
    }
    if (r.isRoot) throw fsError({ code: "EISDIR" }, shown);
    const parent = r.parentFd(opts.createParents ?? true);
    const now = lookupAt(parent, r.name, shown);
    if (now) closeFd(now.fd);
    const st = now?.st;
    if (st?.isDirectory()) throw fsError({ code: "EISDIR" }, shown);
    const mode = safeMode(opts.mode ?? (st?.isFile() ? st.mode & 0o7777 : 0o644));
    at(shown, () => replaceAt(parent, r.name, data, mode, st));
    return describeAt(parent, r.name, r.parts);
  });
}

export async function makeDirectory(
  root: string,
  path: string,
  opts: { parents?: boolean } = {},
): Promise<FileStat> {
  return withResolved(root, path, { followFinalSymlink: true }, (r) => {
    const st = r.stat();
    if (st) {
      if (st.isDirectory() && opts.parents) return describeFd(r.fd!, r.parts, st);
      throw fsError({ code: "EEXIST" }, r.shown);
    }
    const parent = r.parentFd(opts.parents ?? false);
    at(r.shown, () => mkdirat(parent, r.name, 0o755));
    return describeAt(parent, r.name, r.parts);
  });
}

/**
 * rm -r of `name` in `dirFd`: each directory is opened O_NOFOLLOW|O_DIRECTORY from its
 * parent's fd and emptied through that fd, so links are removed, never what they point to.
 */
function removeTree(dirFd: number, name: string, shown: string): void {
  const fd = openat(dirFd, name, O.RDONLY | O.NOFOLLOW | O.DIRECTORY);
  try {
    for (const child of readdirSync(fdPath(fd))) {
      const found = lookupAt(fd, child, shown);
      if (!found) continue;
      closeFd(found.fd);
      if (found.st.isDirectory()) removeTree(fd, child, shown);
      else unlinkat(fd, child);
    }
  } finally {
    closeFd(fd);
  }
  unlinkat(dirFd, name, AT_REMOVEDIR);
}

export async function removePath(
  root: string,
  path: string,
  opts: { recursive?: boolean } = {},
): Promise<{ path: string; artifact_type: ArtifactType; removed: true }> {
  return withResolved(root, path, { followFinalSymlink: false }, (r) => {
    const shown = r.shown;
    if (r.isRoot) throw new PyroError("INVALID_INPUT", `refusing to remove ${shown} itself`);
    const { st } = existing(r);
    const parent = r.parentFd(false);
    try {
      if (!st.isDirectory()) unlinkat(parent, r.name);
      else if (opts.recursive) removeTree(parent, r.name, shown);
      else unlinkat(parent, r.name, AT_REMOVEDIR);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException)?.code;
      if (code === "ENOTEMPTY" || code === "EEXIST") {
        throw new PyroError("INVALID_INPUT", `directory not empty: ${shown}`, {
          details: { path: shown },
          hint: "pass recursive to remove a directory and its contents",
        });
      }
      throw fsError(err, shown);
    }
    return { path: shown, artifact_type: artifactType(st), removed: true };
  });
}

/**
 * Rename `from` to exactly `to` (not "into" `to` when it is a directory). A final symlink
 * on either side is the link itself. Without overwrite an existing `to` is ALREADY_EXISTS;
 * with it, files replace files and a directory only an empty directory.
 */
export async function movePath(
  root: string,
  from: string,
  to: string,
  opts: { overwrite?: boolean } = {},
): Promise<FileStat & { moved_from: string }> {
  return withResolved(root, from, { followFinalSymlink: false }, (src) =>
    withResolved(root, to, { followFinalSymlink: false }, (dst) => {
      if (src.isRoot || dst.isRoot) {
        throw new PyroError("INVALID_INPUT", `cannot move ${src.isRoot ? src.shown : dst.shown} itself`);
      }
      const { fd, st: sst } = existing(src);
      if (dst.real === src.real) return { ...describeFd(fd, src.parts, sst), moved_from: src.shown };
      if (dst.real.startsWith(`${src.real}/`)) {
        throw new PyroError("INVALID_INPUT", `cannot move ${src.shown} into itself (${dst.shown})`);
      }
      const srcParent = src.parentFd(false);
      const dstParent = dst.parentFd(false);
      const now = lookupAt(dstParent, dst.name, dst.shown);
      if (now) {
        closeFd(now.fd);
        if (!opts.overwrite) throw fsError({ code: "EEXIST" }, dst.shown);
        if (now.st.isDirectory() && !sst.isDirectory()) throw fsError({ code: "EISDIR" }, dst.shown);
        if (!now.st.isDirectory() && sst.isDirectory()) throw fsError({ code: "ENOTDIR" }, dst.shown);
      }
      at(dst.shown, () => renameat(srcParent, src.name, dstParent, dst.name));
      return { ...describeAt(dstParent, dst.name, dst.parts), moved_from: src.shown };
    }),
  );
}
