/**
 * Applying OCI image layers (tar streams) to a private staging tree, in order, the way a
 * container runtime does (containerd's archive.Apply), without ever touching the host
 * outside the tree:
 * - Entry names are relative: an absolute name or a ".." component refuses the layer
 *   (INVALID_INPUT naming the entry). Every parent directory is resolved *inside* the tree:
 *   a symlink met on the way (made by this layer or an earlier one) is followed as the guest
 *   will see it (an absolute target restarts at the tree's root, ".." stops at the root), so
 *   nothing resolves outside it. The final component is never followed: it is created as a
 *   temp sibling (O_EXCL|O_NOFOLLOW) and renamed over whatever was there.
 * - All directory walks and creations go through directory fds (src/protocol/archive's
 *   DirFds and the *at() calls), never through path strings.
 * - Whiteouts: `.wh.NAME` removes NAME as left by earlier layers; `.wh..wh..opq` empties its
 *   directory of everything earlier layers put there (entries of the same layer stay).
 * - Kept: regular files (mode incl. setuid/setgid/sticky, mtime), directories, symlinks
 *   (target stored verbatim, absolute or not), hard links (to anything but a directory),
 *   and, when running as root, owners (uid/gid). Dropped, and counted: device nodes and
 *   fifos (the guest's /dev is a devtmpfs mounted over the image's), extended attributes
 *   (the tar reader does not surface them, so file capabilities are lost), and without root
 *   the owners (everything then belongs to the invoking user).
 * - The uncompressed stream is hashed while it is applied; the caller compares the result
 *   with the image config's diff_id, so a layer that does not match is refused.
 */
import {
  closeSync,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  readdirSync,
  rmSync,
  writeSync,
} from "node:fs";
import { DirFds, relativeParts, statAt, tempName } from "../../protocol/archive/safepath.ts";
import { readTar, type TarEntry } from "../../protocol/archive/tar.ts";
import { PyroError } from "../../protocol/errors.ts";
import {
  closeFd,
  fdPath,
  linkat,
  mkdirat,
  O,
  openat,
  readlinkat,
  renameat,
  symlinkat,
  unlinkat,
} from "../../protocol/openat.ts";

export interface ApplyStats {
  entries: number;
  whiteouts: number;
  /** device nodes, fifos and other special entries that were not created */
  dropped: number;
}

const WH = ".wh.";
const OPAQUE = ".wh..wh..opq";
const MAX_SYMLINK_HOPS = 40;

function refuse(entry: string, why: string, layer: string): PyroError {
  return new PyroError("INVALID_INPUT", `image layer ${layer}: entry "${entry}" ${why}`, {
    details: { layer, entry },
  });
}

/**
 * A tree below one trusted root, walked through directory fds, with parent paths resolved
 * in scope (symlinks followed as inside a chroot).
 */
export class ScopedTree {
  readonly fds: DirFds;
  readonly asRoot = process.getuid?.() === 0;

  constructor(root: string) {
    this.fds = new DirFds(root, "image root");
  }

  /**
   * Real (symlink-free) components of `parts`, following symlinks in scope. Missing
   * directories are created when `create`, else undefined is returned.
   */
  resolveDir(parts: string[], create: boolean, shown: string): string[] | undefined {
    const real: string[] = [];
    const queue = [...parts];
    let hops = 0;
    while (queue.length > 0) {
      const c = queue.shift()!;
      if (c === "" || c === ".") continue;
      if (c === "..") {
        real.pop();
        continue;
      }
      const dir = this.fds.dir(real, false, shown);
      const st = statAt(dir, c, shown);
      if (!st) {
        if (!create) return undefined;
        mkdirat(dir, c, 0o755);
        real.push(c);
      } else if (st.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS)
          throw new PyroError("INVALID_INPUT", `${shown}: too many levels of symbolic links`);
        const target = readlinkat(dir, c);
        if (target.startsWith("/")) real.length = 0;
        queue.unshift(...target.split("/"));
      } else if (st.isDirectory()) {
        real.push(c);
      } else {
        throw new PyroError("NOT_A_DIRECTORY", `${shown}: "${[...real, c].join("/")}" is not a directory`);
      }
    }
    return real;
  }

  /** The directory fd holding the final component of `parts`, plus that name. */
  parentOf(
    parts: string[],
    create: boolean,
    shown: string,
  ): { dir: number; name: string; real: string[] } | undefined {
    const real = this.resolveDir(parts.slice(0, -1), create, shown);
    if (!real) return undefined;
    return { dir: this.fds.dir(real, false, shown), name: parts.at(-1)!, real };
  }

  /**
   * Remove `name` in the real directory `real`, a whole directory tree included (nothing in
   * it is followed); cached fds below it are dropped, the parent's stays valid.
   */
  remove(real: string[], name: string): void {
    const dir = this.fds.dir(real, false, name);
    const st = statAt(dir, name, name);
    if (!st) return;
    if (st.isDirectory()) {
      // rm never follows symlinks inside; the path goes through the checked directory fd
      rmSync(`${fdPath(dir)}/${name}`, { recursive: true, force: true });
      this.fds.forget([...real, name]);
    } else unlinkat(dir, name);
  }

  /** Owner (root only), then mode (chown clears setuid), of `name` in `dir`, not followed. */
  own(dir: number, name: string, uid: number, gid: number): void {
    if (this.asRoot) lchownSync(`${fdPath(dir)}/${name}`, uid, gid);
  }

  /** Write a file (replacing what is there) from chunks; owner and mode applied to the fd. */
  async writeFile(
    real: string[],
    name: string,
    body: AsyncIterable<Uint8Array> | Uint8Array,
    meta: { mode: number; uid?: number; gid?: number; mtime?: number },
  ): Promise<void> {
    const dir = this.fds.dir(real, false, name);
    const tmp = tempName();
    let fd: number | undefined = openat(dir, tmp, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
    try {
      const chunks = body instanceof Uint8Array ? [body] : body;
      for await (const chunk of chunks) {
        let off = 0;
        while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
      }
      if (this.asRoot) fchownSync(fd, meta.uid ?? 0, meta.gid ?? 0);
      fchmodSync(fd, meta.mode & 0o7777);
      if (meta.mtime !== undefined) futimesSync(fd, meta.mtime, meta.mtime);
      closeSync(fd);
      fd = undefined;
      this.clearDir(real, name);
      renameat(dir, tmp, dir, name);
    } catch (err) {
      closeFd(fd);
      try {
        unlinkat(dir, tmp);
      } catch {}
      throw err;
    }
  }

  /** A directory in the way of a non-directory goes (OCI: the later layer wins). */
  clearDir(real: string[], name: string): void {
    if (statAt(this.fds.dir(real, false, name), name, name)?.isDirectory()) this.remove(real, name);
  }

  close(): void {
    this.fds.close();
  }
}

interface DirMeta {
  parts: string[];
  mode: number;
  mtime: number;
  uid: number;
  gid: number;
}

/**
 * Apply one uncompressed layer stream to the tree. `source` must be the whole stream: it is
 * read to its end (past the tar end marker) so the caller's hash covers every byte.
 */
export async function applyLayer(
  tree: ScopedTree,
  source: AsyncIterable<Uint8Array>,
  layer: string,
  onDropped?: (entry: string, why: string) => void,
): Promise<ApplyStats> {
  const stats: ApplyStats = { entries: 0, whiteouts: 0, dropped: 0 };
  const it = source[Symbol.asyncIterator]();
  // readTar stops at the end marker and would close the stream: keep it open to drain it.
  const held: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      next: () => it.next(),
      return: async () => ({ done: true, value: undefined }),
    }),
  };
  const ours = new Set<string>(); // paths this layer created (an opaque marker keeps them)
  const dirs: DirMeta[] = [];
  for await (const entry of readTar(held)) {
    tree.fds.trim(); // no directory fd is in use between entries
    stats.entries++;
    let parts: string[];
    try {
      parts = relativeParts(entry.path, `entry "${entry.path}"`);
    } catch {
      throw refuse(entry.path, "would be written outside the root filesystem", layer);
    }
    if (parts.length === 0) continue; // "./" itself
    const name = parts.at(-1)!;
    const shown = `image layer ${layer}: entry "${entry.path}"`;
    if (name === OPAQUE) {
      stats.whiteouts++;
      const real = tree.resolveDir(parts.slice(0, -1), true, shown)!;
      const dir = tree.fds.dir(real, false, shown);
      const prefix = parts.slice(0, -1).join("/");
      for (const child of readdirSync(fdPath(dir))) {
        if (!ours.has(prefix ? `${prefix}/${child}` : child)) tree.remove(real, child);
      }
      continue;
    }
    if (name.startsWith(WH)) {
      stats.whiteouts++;
      const target = name.slice(WH.length);
      const at = tree.parentOf(parts, false, shown);
      if (at && !ours.has([...parts.slice(0, -1), target].join("/"))) tree.remove(at.real, target);
      continue;
    }
    ours.add(parts.join("/"));
    const at = tree.parentOf(parts, true, shown)!;
    await applyEntry(tree, at.real, at.name, parts, entry, shown, dirs, stats, onDropped);
  }
  for (;;) if ((await it.next()).done) break; // the rest of the stream, for the hash
  // Directory metadata last, deepest first: children no longer change it.
  dirs.sort((a, b) => b.parts.length - a.parts.length);
  for (const d of dirs) {
    let fd: number | undefined;
    try {
      const at = tree.parentOf(d.parts, false, "directory");
      if (!at) continue;
      fd = openat(at.dir, at.name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
      if (tree.asRoot) fchownSync(fd, d.uid, d.gid);
      fchmodSync(fd, d.mode & 0o7777);
      futimesSync(fd, d.mtime, d.mtime);
    } catch {
      // replaced by a later entry: nothing to restore
    } finally {
      closeFd(fd);
    }
  }
  tree.fds.trim();
  return stats;
}

async function applyEntry(
  tree: ScopedTree,
  real: string[],
  name: string,
  parts: string[],
  entry: TarEntry,
  shown: string,
  dirs: DirMeta[],
  stats: ApplyStats,
  onDropped?: (entry: string, why: string) => void,
): Promise<void> {
  const dir = tree.fds.dir(real, false, shown);
  switch (entry.type) {
    case "directory": {
      const st = statAt(dir, name, shown);
      if (st && !st.isDirectory()) unlinkat(dir, name);
      if (!st?.isDirectory()) mkdirat(dir, name, 0o755);
      dirs.push({ parts, mode: entry.mode, mtime: entry.mtime, uid: entry.uid, gid: entry.gid });
      return;
    }
    case "file":
      await tree.writeFile(real, name, entry.body, entry);
      return;
    case "symlink": {
      if (!entry.linkTarget) throw new PyroError("INVALID_INPUT", `${shown} is a symlink without a target`);
      tree.clearDir(real, name);
      const tmp = tempName();
      symlinkat(entry.linkTarget, dir, tmp);
      try {
        tree.own(dir, tmp, entry.uid, entry.gid);
        renameat(dir, tmp, dir, name);
      } catch (err) {
        unlinkat(dir, tmp);
        throw err;
      }
      return;
    }
    case "hardlink": {
      let target: string[];
      try {
        target = relativeParts(entry.linkTarget ?? "", shown);
      } catch {
        throw new PyroError(
          "INVALID_INPUT",
          `${shown} is a hard link to "${entry.linkTarget}", outside the root filesystem`,
        );
      }
      const src = target.length > 0 ? tree.parentOf(target, false, shown) : undefined;
      const srcSt = src ? statAt(src.dir, src.name, shown) : undefined;
      if (!src || !srcSt || srcSt.isDirectory())
        throw new PyroError(
          "INVALID_INPUT",
          `${shown} is a hard link to "${entry.linkTarget}", which is not a file of the image`,
        );
      const existing = statAt(dir, name, shown);
      if (existing && existing.ino === srcSt.ino && existing.dev === srcSt.dev) return;
      tree.clearDir(real, name);
      const tmp = tempName();
      linkat(src.dir, src.name, dir, tmp);
      try {
        renameat(dir, tmp, dir, name);
      } catch (err) {
        unlinkat(dir, tmp);
        throw err;
      }
      return;
    }
    default:
      stats.dropped++;
      onDropped?.(entry.path, `tar type '${entry.typeflag}'`);
      return;
  }
}
