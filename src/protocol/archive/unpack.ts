/**
 * Safe extraction of a tar stream under destRoot.
 *
 * Policy (what a model-driven upload may and may not do):
 * - Entry names are relative: an absolute name or any ".." component is refused with
 *   PATH_OUTSIDE_WORKSPACE, as are device, fifo and other special entries (a device node
 *   would reach outside the workspace) and hardlinks whose target is absolute or has "..".
 * - Nothing is ever written through a symlink: each parent is lstat'ed component by
 *   component and a symlink there (whether the archive made it earlier or it already
 *   existed, wherever it points) refuses the entry. Symlink entries themselves are stored
 *   verbatim and may point anywhere; they are only data.
 * - Files, links and symlinks are created as a temp sibling (O_EXCL|O_NOFOLLOW) and renamed
 *   over the target, so an existing symlink or hardlink at the target is replaced, never
 *   written into. A directory entry over an existing file/symlink replaces it; a non-directory
 *   entry over a directory replaces it only if the directory is empty.
 * - Modes are kept with setuid/setgid masked off; mtimes are kept. Directory modes and
 *   mtimes are applied at the end (deepest first, opened O_NOFOLLOW), so a read-only
 *   directory can still receive its children and their creation does not disturb its mtime.
 *   Owners are not restored: everything belongs to the extracting user.
 * - A "." entry (the destination itself) is skipped: an archive does not get to change the
 *   destination's own mode or mtime.
 * - A stream cannot be validated before it is written, so a refused entry fails the whole
 *   import *after* earlier entries were written into destRoot (never outside it). Callers
 *   that need all-or-nothing extract into a fresh directory and rename.
 */
import { constants as C } from "node:fs";
import {
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  realpath,
  rename,
  rmdir,
  symlink,
  unlink,
} from "node:fs/promises";
import { PyroError } from "../errors.ts";
import type { ByteSource } from "./bytes.ts";
import { fsError } from "./fserror.ts";
import {
  CREATE_EXCL,
  ensureDirChain,
  joinParts,
  type PathParts,
  relativeParts,
  safeMode,
  tempName,
  writeAll,
} from "./safepath.ts";
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
  const root = await realpath(destRoot).catch((err) => {
    throw fsError(err, "extraction destination");
  });
  if (!(await lstat(root)).isDirectory())
    throw new PyroError("NOT_A_DIRECTORY", "extraction destination is not a directory");

  const result: UnpackResult = { files: 0, directories: 0, symlinks: 0, bytes: 0 };
  const dirs: DirMeta[] = [];
  let entries = 0;
  try {
    for await (const entry of readTar(source)) {
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
            await extractDir(root, parts, shown);
            dirs.push({ parts, mode: entry.mode, mtime: entry.mtime });
            result.directories++;
            break;
          case "file":
            await extractFile(root, parts, entry, shown);
            result.files++;
            result.bytes += entry.size;
            break;
          case "symlink":
            await extractSymlink(root, parts, entry, shown);
            result.symlinks++;
            break;
          case "hardlink":
            await extractHardlink(root, parts, entry, strip, shown);
            result.files++;
            break;
        }
      } catch (err) {
        throw fsError(err, shown);
      }
    }
  } finally {
    await applyDirMeta(root, dirs);
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

/** Make room for a non-directory at target: an empty directory goes, a full one is an error. */
async function clearDirAt(target: string, shown: string): Promise<void> {
  const st = await lstat(target).catch(() => undefined);
  if (!st?.isDirectory()) return;
  await rmdir(target).catch((err) => {
    if (err?.code === "ENOTEMPTY" || err?.code === "EEXIST") {
      throw new PyroError("IS_A_DIRECTORY", `${shown} would replace a non-empty directory`);
    }
    throw err;
  });
}

async function extractDir(root: string, parts: PathParts, shown: string): Promise<void> {
  const parent = await ensureDirChain(root, parts.slice(0, -1), true, shown);
  const target = `${parent}/${parts.at(-1)}`;
  const st = await lstat(target).catch(() => undefined);
  if (st?.isDirectory()) return;
  if (st) await unlink(target); // a file or symlink in the way is replaced, never followed
  await mkdir(target, 0o700); // final mode comes at the end
}

async function extractFile(root: string, parts: PathParts, entry: TarEntry, shown: string): Promise<void> {
  const parent = await ensureDirChain(root, parts.slice(0, -1), true, shown);
  const target = `${parent}/${parts.at(-1)}`;
  await clearDirAt(target, shown);
  const tmp = `${parent}/${tempName()}`;
  const fh = await open(tmp, CREATE_EXCL, 0o600);
  try {
    for await (const chunk of entry.body) await writeAll(fh, chunk);
    await fh.chmod(safeMode(entry.mode));
    await fh.utimes(entry.mtime, entry.mtime);
    await fh.close();
    await rename(tmp, target);
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

async function extractSymlink(root: string, parts: PathParts, entry: TarEntry, shown: string): Promise<void> {
  if (!entry.linkTarget) throw new PyroError("INVALID_INPUT", `${shown} is a symlink without a target`);
  const parent = await ensureDirChain(root, parts.slice(0, -1), true, shown);
  const target = `${parent}/${parts.at(-1)}`;
  await clearDirAt(target, shown);
  const tmp = `${parent}/${tempName()}`;
  await symlink(entry.linkTarget, tmp);
  try {
    await lutimes(tmp, entry.mtime, entry.mtime).catch(() => {}); // cosmetic; not all filesystems allow it
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

async function extractHardlink(
  root: string,
  parts: PathParts,
  entry: TarEntry,
  strip: number,
  shown: string,
): Promise<void> {
  const linkName = entry.linkTarget ?? "";
  const targetParts = linkName
    ? entryParts(linkName, strip, `${shown} (hardlink to "${linkName}")`)
    : undefined;
  if (!targetParts || targetParts.length === 0) {
    throw new PyroError("INVALID_INPUT", `${shown} is a hardlink without a usable target`);
  }
  const srcDir = await ensureDirChain(root, targetParts.slice(0, -1), false, shown);
  const src = `${srcDir}/${targetParts.at(-1)}`;
  const srcSt = await lstat(src);
  if (!srcSt.isFile()) {
    throw new PyroError(
      "INVALID_INPUT",
      `${shown} is a hardlink to "${linkName}", which is not a regular file`,
    );
  }
  const parent = await ensureDirChain(root, parts.slice(0, -1), true, shown);
  const target = `${parent}/${parts.at(-1)}`;
  const existing = await lstat(target).catch(() => undefined);
  if (existing && existing.ino === srcSt.ino && existing.dev === srcSt.dev) return;
  await clearDirAt(target, shown);
  const tmp = `${parent}/${tempName()}`;
  await link(src, tmp);
  await rename(tmp, target).catch(async (err) => {
    await unlink(tmp).catch(() => {});
    throw err;
  });
}

/** Best effort: a directory that was since replaced or removed is simply left alone. */
async function applyDirMeta(root: string, dirs: DirMeta[]): Promise<void> {
  dirs.sort((a, b) => b.parts.length - a.parts.length);
  for (const d of dirs) {
    try {
      const parent = await ensureDirChain(root, d.parts.slice(0, -1), false, "directory");
      const fh = await open(joinParts(parent, d.parts.slice(-1)), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
      try {
        await fh.chmod(safeMode(d.mode));
        await fh.utimes(d.mtime, d.mtime);
      } finally {
        await fh.close();
      }
    } catch {
      // replaced by a later entry, or removed: nothing to restore
    }
  }
}
