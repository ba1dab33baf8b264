/**
 * Pack a file or directory tree into a tar stream, lazily: one directory listing per level
 * of the current path and one 64 KiB read buffer are in memory, and nothing is read until
 * the consumer pulls.
 *
 * Names in the archive: exporting `src/a.txt` gives `a.txt`; exporting the directory `src`
 * gives `src/`, `src/...` (relative to rel's parent); exporting the root itself (rel "" or
 * ".") gives its children with no prefix (`a.txt`, `src/`, ...), since the root's own name
 * means nothing to the receiver. Order is depth-first with names sorted, so archives are
 * deterministic.
 *
 * What is stored: regular files (content read through an O_NOFOLLOW fd, size as lstat saw
 * it; a file that shrinks or is replaced while being read fails the export with IO_ERROR
 * rather than padding silently), directories, symlinks as symlinks (never followed),
 * permission bits and whole-second mtimes; owners only with `owners: true`. Hardlinked files
 * are stored as independent copies. Sockets, fifos and devices are skipped. Names are read
 * as UTF-8.
 *
 * Race freedom: `root` is trusted (opened as given, once); below it nothing is looked up by
 * path string. `rel`'s components are opened O_PATH|O_NOFOLLOW from the root's fd (a symlink
 * among its parents is refused; a final one is archived as the link), each directory is
 * held as an fd while its children are listed (through /proc/self/fd/N) and described
 * (openat O_NOFOLLOW + fstat relative to it), and file bodies are opened from the same fd.
 * So a process that swaps a directory under the exported tree for a symlink to /etc while
 * the export runs cannot make it read a byte from outside. The walk holds one fd per level
 * of the current path and closes them all when it ends, fails or is cancelled.
 */
import { fstatSync, readdirSync, readSync, type Stats } from "node:fs";
import { PyroError } from "../errors.ts";
import { closeFd, fdPath, lookupAt, O, openat, readlinkat } from "../openat.ts";
import { iteratorStream } from "./bytes.ts";
import { fsError } from "./fserror.ts";
import { DirFds, relativeParts } from "./safepath.ts";
import { type TarWriteEntry, writeTar } from "./tar.ts";

export interface PackOptions {
  /** called with each path relative to root ("src/node_modules"); true leaves it (and its subtree) out */
  exclude?: (rel: string) => boolean;
  /** store uid/gid/uname/gname; default off (numbers from one machine mean nothing on another) */
  owners?: boolean;
  /** how errors name paths: `${shownRoot}/${rel}`; default "." */
  shownRoot?: string;
}

const READ_CHUNK = 64 * 1024;

export function packTree(root: string, rel: string, opts: PackOptions = {}): ReadableStream<Uint8Array> {
  const shownRoot = opts.shownRoot ?? ".";
  return iteratorStream(coalesce(writeTar(walk(root, rel, opts, shownRoot)), READ_CHUNK));
}

interface Frame {
  /** the listed directory's O_PATH fd (owned by the frame, except the root's) */
  fd: number;
  relDir: string;
  names: string[];
  next: number;
}

async function* walk(
  root: string,
  rel: string,
  opts: PackOptions,
  shownRoot: string,
): AsyncGenerator<TarWriteEntry> {
  const show = (r: string) => (r ? `${shownRoot}/${r}` : shownRoot);
  const parts = relativeParts(rel, show(rel));
  const top = parts.join("/");
  // archive name = root-relative path minus the top's parent directory
  const cut = top === "" ? 0 : top.lastIndexOf("/") + 1;
  const dirs = new DirFds(root, shownRoot);
  const stack: Frame[] = [];
  /** Describe `base` in `dir` (archived as relPath minus the cut); a directory becomes a frame. */
  const visit = (
    dir: number,
    base: string,
    relPath: string,
    required: boolean,
  ): TarWriteEntry | undefined => {
    const shown = show(relPath);
    const found = lookupAt(dir, base, shown);
    if (!found && required) throw fsError({ code: "ENOENT" }, shown);
    if (!found) return undefined; // deleted while we walked
    let entry: TarWriteEntry | undefined;
    try {
      entry = describe(dir, base, found, relPath.slice(cut), opts, shown);
    } finally {
      if (entry?.header.type !== "directory") closeFd(found.fd);
    }
    if (entry?.header.type === "directory") {
      const frame: Frame = { fd: found.fd, relDir: relPath, names: [], next: 0 };
      stack.push(frame); // owned by the stack from here, so closed whatever happens next
      frame.names = list(found.fd, shown);
    }
    return entry;
  };
  try {
    if (top === "") {
      stack.push({ fd: dirs.root, relDir: "", names: list(dirs.root, show("")), next: 0 });
    } else {
      const parent = dirs.dir(parts.slice(0, -1), false, show(top));
      const entry = visit(parent, parts.at(-1)!, top, true);
      if (entry) yield entry;
    }

    while (stack.length > 0) {
      const frame = stack.at(-1)!;
      if (frame.next >= frame.names.length) {
        if (frame.fd !== dirs.root) closeFd(frame.fd);
        stack.pop();
        continue;
      }
      const name = frame.names[frame.next++]!;
      const relPath = frame.relDir ? `${frame.relDir}/${name}` : name;
      if (opts.exclude?.(relPath)) continue;
      const entry = visit(frame.fd, name, relPath, false);
      if (entry) yield entry;
    }
  } finally {
    for (const f of stack) if (f.fd !== dirs.root) closeFd(f.fd);
    dirs.close();
  }
}

/** The names in the directory behind `fd` (the magic link reopens exactly that directory). */
function list(fd: number, shown: string): string[] {
  try {
    return readdirSync(fdPath(fd)).sort();
  } catch (err) {
    throw fsError(err, shown);
  }
}

/**
 * The tar entry, archived as `name`, for the object `found` (an O_PATH fd of `base` in
 * `dir`, and its fstat), or undefined for a special file. The body reads from `dir`, which the walk holds open until
 * the consumer has pulled it.
 */
function describe(
  dir: number,
  base: string,
  found: { fd: number; st: Stats },
  name: string,
  opts: PackOptions,
  shown: string,
): TarWriteEntry | undefined {
  const st = found.st;
  const common = {
    path: name,
    mode: st.mode & 0o7777,
    mtime: Math.floor(st.mtimeMs / 1000),
    ...(opts.owners ? { uid: st.uid, gid: st.gid } : {}),
  };
  if (st.isDirectory()) return { header: { ...common, type: "directory" } };
  if (st.isSymbolicLink()) {
    let target: string;
    try {
      target = readlinkat(found.fd, "");
    } catch (err) {
      throw fsError(err, shown);
    }
    return { header: { ...common, type: "symlink", linkTarget: target } };
  }
  if (!st.isFile()) return undefined;
  return {
    header: { ...common, type: "file", size: st.size },
    body: readBody(dir, base, st, shown),
  };
}

/**
 * Exactly `st.size` bytes of the file `name` in `dir`, opened only when the body is pulled
 * (so a cancelled export leaks no descriptor), relative to the held directory fd and
 * O_NOFOLLOW; it must still be the file that was described (same inode), else IO_ERROR.
 * Growth past the size is not read.
 */
async function* readBody(dir: number, name: string, st: Stats, shown: string): AsyncGenerator<Uint8Array> {
  if (st.size === 0) return;
  let fd: number;
  try {
    fd = openat(dir, name, O.RDONLY | O.NOFOLLOW | O.NONBLOCK);
  } catch (err) {
    throw fsError(err, shown);
  }
  try {
    const now = fstatSync(fd);
    if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev)
      throw new PyroError("IO_ERROR", `${shown} changed while it was being exported`);
    let pos = 0;
    while (pos < st.size) {
      const buf = new Uint8Array(Math.min(READ_CHUNK, st.size - pos));
      let bytesRead: number;
      try {
        bytesRead = readSync(fd, buf, 0, buf.length, pos);
      } catch (err) {
        throw fsError(err, shown);
      }
      if (bytesRead === 0) throw new PyroError("IO_ERROR", `${shown} shrank while it was being exported`);
      pos += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    closeFd(fd);
  }
}

/** Join small pieces (headers, small files) into chunks of about `size` bytes for the wire. */
async function* coalesce(src: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(size);
  let n = 0;
  for await (const chunk of src) {
    if (n + chunk.length > size && n > 0) {
      yield buf.subarray(0, n);
      buf = new Uint8Array(size);
      n = 0;
    }
    if (chunk.length >= size) yield chunk;
    else {
      buf.set(chunk, n);
      n += chunk.length;
    }
  }
  if (n > 0) yield buf.subarray(0, n);
}
