/**
 * Safe extraction of a tar stream under destRoot.
 *
 * Policy (what a model-driven upload may and may not do):
 * - Entry names are relative: an absolute name or any ".." component is refused with
 *   PATH_OUTSIDE_WORKSPACE, as are device, fifo and other special entries (a device node
 *   would reach outside the workspace) and hardlinks whose target is absolute or has "..".
 * - Nothing is ever written through a symlink: each parent is opened component by
 *   component from a directory fd, O_PATH|O_NOFOLLOW (safepath.ts), and a symlink there
 *   (whether the archive made it earlier or it already existed, wherever it points) refuses
 *   the entry. Every entry is then created relative to the parent's fd (openat, mkdirat,
 *   symlinkat, linkat, renameat, unlinkat), never through a path string, so a process that
 *   swaps a directory of the destination for a symlink to /etc *during* the extraction
 *   cannot redirect an entry out of it. Symlink entries themselves are stored verbatim and
 *   may point anywhere; they are only data.
 * - Files, links and symlinks are created as a temp sibling (O_EXCL|O_NOFOLLOW) and renamed
 *   over the target, so an existing symlink or hardlink at the target is replaced, never
 *   written into. A directory entry over an existing file/symlink replaces it; a non-directory
 *   entry over a directory replaces it only if the directory is empty.
 * - Modes are kept with setuid/setgid masked off; mtimes are kept. Directory modes and
 *   mtimes are applied at the end (deepest first, opened O_NOFOLLOW from the parent's fd), so a read-only
 *   directory can still receive its children and their creation does not disturb its mtime.
 *   Owners are not restored: everything belongs to the extracting user.
 * - A "." entry (the destination itself) is skipped: an archive does not get to change the
 *   destination's own mode or mtime.
 * - A stream cannot be validated before it is written, so a refused entry fails the whole
 *   import *after* earlier entries were written into destRoot (never outside it). Callers
 *   that need all-or-nothing extract into a fresh directory and rename.
 * - destRoot itself is trusted (opened once, as given: the agent passes /proc/self/fd/N of
 *   a destination it resolved race-free). Every fd opened is closed before unpackTar returns.
 */
import { closeSync, fchmodSync, fstatSync, futimesSync, writeSync } from "node:fs";
import { lutimes } from "node:fs/promises";
import { PyroError } from "../errors.ts";
import {
  AT_REMOVEDIR,
  closeFd,
  fdPath,
  linkat,
  mkdirat,
  O,
  openat,
  renameat,
  symlinkat,
  unlinkat,
} from "../openat.ts";
import type { ByteSource } from "./bytes.ts";
import { fsError } from "./fserror.ts";
import { DirFds, type PathParts, relativeParts, safeMode, statAt, tempName } from "./safepath.ts";
import { readTar, type TarEntry } from "./tar.ts";

export interface UnpackOptions {
  /**
   * Drop this many leading components from every name (and hardlink target); entries left
   * empty are skipped. "." components do not count (GNU tar counts a leading "./").
   */
  stripComponents?: number;
  /** total file bytes allowed (FILE_TOO_LARGE beyond); default unlimited */
  maxBytes?: number;
  /** entries allowed, of any type (INVALID_INPUT beyond); default 1,000,000 */
  maxEntries?: number;
  /** called with each extracted entry's normalised relative path, before it is written */
  onEntry?: (path: string) => void;
  /**
   * Sees every regular file's bytes as they are written and every hardlink made, so a caller
   * can index what it extracts without reading it back (the agent's diff baseline from a
   * seed: guest/baseline.ts). Paths are the normalised relative ones `onEntry` sees.
   */
  observer?: UnpackObserver;
}

/** What `UnpackOptions.observer` is told; see there. */
export interface UnpackObserver {
  /** a regular file of `size` bytes is about to be written at `path`: a sink for its bytes, or none */
  file(path: string, size: number): FileObserver | undefined;
  /** `path` was made a hardlink to the file at `target` */
  hardlink(path: string, target: string): void;
}

export interface FileObserver {
  /** the next bytes written (the buffer may be reused after the returned promise settles) */
  chunk(bytes: Uint8Array): void | Promise<void>;
  /** every byte written and the file closed; `ino`/`mtimeMs`: its identity at that moment */
  done(st: { ino: number; size: number; mtimeMs: number }): void | Promise<void>;
  /** the write failed: the file will not be there */
  abort(): void;
}

export type UnpackResult = {
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
};

interface DirMeta {
  parts: PathParts;
  mode: number;
  mtime: number;
}

const DEFAULT_MAX_ENTRIES = 1_000_000;

export async function unpackTar(
  source: ByteSource,
  destRoot: string,
  opts: UnpackOptions = {},
): Promise<UnpackResult> {
  const strip = opts.stripComponents ?? 0;
  const maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const maxBytes = opts.maxBytes ?? Number.MAX_SAFE_INTEGER;
  if (!Number.isInteger(strip) || strip < 0)
    throw new PyroError("INVALID_INPUT", "stripComponents must be >= 0");
  const root = new DirFds(destRoot, "extraction destination");
  const result: UnpackResult = { files: 0, directories: 0, symlinks: 0, bytes: 0 };
  const dirs: DirMeta[] = [];
  let entries = 0;
  try {
    for await (const entry of readTar(source)) {
      root.trim(); // no directory fd is in use between entries
      if (++entries > maxEntries) {
        throw new PyroError("INVALID_INPUT", `archive has more than ${maxEntries} entries`);
      }
      const shown = `archive entry "${entry.path}"`;
      const parts = entryParts(entry.path, strip, shown);
      if (!parts) continue; // stripped away entirely; the reader skips the body
      if (parts.length === 0) {
        if (entry.type === "directory") continue;
        throw new PyroError("INVALID_INPUT", `${shown} names the destination itself`);
      }
      if (entry.type === "other") {
        throw new PyroError(
          "PATH_OUTSIDE_WORKSPACE",
          `${shown} is a special file (tar type '${entry.typeflag}'); only files, directories and links are extracted`,
          { details: { entry: entry.path } },
        );
      }
      if (entry.type === "file" && result.bytes + entry.size > maxBytes) {
        throw new PyroError("FILE_TOO_LARGE", `archive exceeds the limit of ${maxBytes} bytes at ${shown}`);
      }
      opts.onEntry?.(parts.join("/"));
      try {
        switch (entry.type) {
          case "directory":
            extractDir(root, parts, shown);
            dirs.push({ parts, mode: entry.mode, mtime: entry.mtime });
            result.directories++;
            break;
          case "file":
            await extractFile(root, parts, entry, shown, opts.observer);
            result.files++;
            result.bytes += entry.size;
            break;
          case "symlink":
            await extractSymlink(root, parts, entry, shown);
            result.symlinks++;
            break;
          case "hardlink":
            {
              const target = extractHardlink(root, parts, entry, strip, shown);
              opts.observer?.hardlink(parts.join("/"), target.join("/"));
            }
            result.files++;
            break;
        }
      } catch (err) {
        throw fsError(err, shown);
      }
    }
  } finally {
    applyDirMeta(root, dirs);
    root.close();
  }
  return result;
}

/** Normalised components; undefined when stripping leaves nothing. Refuses escapes. */
function entryParts(name: string, strip: number, shown: string): PathParts | undefined {
  let parts: PathParts;
  try {
    parts = relativeParts(name, shown);
  } catch (err) {
    throw new PyroError("PATH_OUTSIDE_WORKSPACE", `${shown} would be written outside the destination`, {
      details: { entry: name },
      cause: err,
    });
  }
  if (strip === 0) return parts;
  return parts.length > strip ? parts.slice(strip) : undefined;
}

/** Undo a temp entry after a failed step; it may never have been created. */
function dropTemp(dir: number, tmp: string): void {
  try {
    unlinkat(dir, tmp);
  } catch {
    // not there: nothing to undo
  }
}

/** Make room for a non-directory at name: an empty directory goes, a full one is an error. */
function clearDirAt(root: DirFds, dir: number, parts: PathParts, shown: string): void {
  if (!statAt(dir, parts.at(-1)!, shown)?.isDirectory()) return;
  try {
    unlinkat(dir, parts.at(-1)!, AT_REMOVEDIR);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOTEMPTY" || code === "EEXIST") {
      throw new PyroError("IS_A_DIRECTORY", `${shown} would replace a non-empty directory`);
    }
    throw err;
  }
  root.forget(parts);
}

function extractDir(root: DirFds, parts: PathParts, shown: string): void {
  const dir = root.dir(parts.slice(0, -1), true, shown);
  const name = parts.at(-1)!;
  const st = statAt(dir, name, shown);
  if (st?.isDirectory()) return;
  if (st) unlinkat(dir, name); // a file or symlink in the way is replaced, never followed
  mkdirat(dir, name, 0o700); // final mode comes at the end
}

async function extractFile(
  root: DirFds,
  parts: PathParts,
  entry: TarEntry,
  shown: string,
  observer: UnpackObserver | undefined,
): Promise<void> {
  const dir = root.dir(parts.slice(0, -1), true, shown);
  clearDirAt(root, dir, parts, shown);
  const tmp = tempName();
  let fd: number | undefined = openat(dir, tmp, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
  const sink = observer?.file(parts.join("/"), entry.size);
  try {
    for await (const chunk of entry.body) {
      let off = 0;
      while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
      if (sink) await sink.chunk(chunk);
    }
    fchmodSync(fd, safeMode(entry.mode));
    futimesSync(fd, entry.mtime, entry.mtime);
    const st = sink ? fstatSync(fd) : null;
    closeSync(fd);
    fd = undefined;
    renameat(dir, tmp, dir, parts.at(-1)!);
    if (sink && st) await sink.done({ ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });
  } catch (err) {
    sink?.abort();
    closeFd(fd);
    dropTemp(dir, tmp);
    throw err;
  }
}

async function extractSymlink(root: DirFds, parts: PathParts, entry: TarEntry, shown: string): Promise<void> {
  if (!entry.linkTarget) throw new PyroError("INVALID_INPUT", `${shown} is a symlink without a target`);
  const dir = root.dir(parts.slice(0, -1), true, shown);
  clearDirAt(root, dir, parts, shown);
  const tmp = tempName();
  symlinkat(entry.linkTarget, dir, tmp);
  try {
    // cosmetic, and not all filesystems allow it; the path is the held directory + one name
    await lutimes(`${fdPath(dir)}/${tmp}`, entry.mtime, entry.mtime).catch(() => {});
    renameat(dir, tmp, dir, parts.at(-1)!);
  } catch (err) {
    dropTemp(dir, tmp);
    throw err;
  }
}

function extractHardlink(
  root: DirFds,
  parts: PathParts,
  entry: TarEntry,
  strip: number,
  shown: string,
): PathParts {
  const linkName = entry.linkTarget ?? "";
  const targetParts = linkName
    ? entryParts(linkName, strip, `${shown} (hardlink to "${linkName}")`)
    : undefined;
  if (!targetParts || targetParts.length === 0) {
    throw new PyroError("INVALID_INPUT", `${shown} is a hardlink without a usable target`);
  }
  const srcDir = root.dir(targetParts.slice(0, -1), false, shown);
  const srcName = targetParts.at(-1)!;
  const srcSt = statAt(srcDir, srcName, shown);
  if (!srcSt) throw fsError({ code: "ENOENT" }, shown);
  if (!srcSt.isFile()) {
    throw new PyroError(
      "INVALID_INPUT",
      `${shown} is a hardlink to "${linkName}", which is not a regular file`,
    );
  }
  const dir = root.dir(parts.slice(0, -1), true, shown);
  const existing = statAt(dir, parts.at(-1)!, shown);
  if (existing && existing.ino === srcSt.ino && existing.dev === srcSt.dev) return targetParts;
  clearDirAt(root, dir, parts, shown);
  const tmp = tempName();
  // linkat without AT_SYMLINK_FOLLOW: had the source been swapped for a symlink since the
  // check, the link would be to that symlink, never to what it points at
  linkat(srcDir, srcName, dir, tmp);
  try {
    renameat(dir, tmp, dir, parts.at(-1)!);
  } catch (err) {
    dropTemp(dir, tmp);
    throw err;
  }
  return targetParts;
}

/** Best effort: a directory that was since replaced or removed is simply left alone. */
function applyDirMeta(root: DirFds, dirs: DirMeta[]): void {
  dirs.sort((a, b) => b.parts.length - a.parts.length);
  for (const d of dirs) {
    let fd: number | undefined;
    try {
      const parent = root.dir(d.parts.slice(0, -1), false, "directory");
      fd = openat(parent, d.parts.at(-1)!, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
      fchmodSync(fd, safeMode(d.mode));
      futimesSync(fd, d.mtime, d.mtime);
    } catch {
      // replaced by a later entry, or removed: nothing to restore
    } finally {
      closeFd(fd);
    }
  }
}
