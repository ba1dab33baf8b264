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
 * What is stored: regular files (content read through an O_NOFOLLOW fd, size as lstat saw it; a file that shrinks
 * while being read fails the export with IO_ERROR rather than padding silently), directories,
 * symlinks as symlinks (never followed), permission bits and whole-second mtimes; owners only
 * with `owners: true`. Hardlinked files are stored as independent copies. Sockets, fifos and
 * devices are skipped. Names are read as UTF-8.
 */
import { constants as C } from "node:fs";
import { lstat, open, readdir, readlink } from "node:fs/promises";
import { PyroError } from "../errors.ts";
import { iteratorStream } from "./bytes.ts";
import { fsError } from "./fserror.ts";
import { joinParts, relativeParts } from "./safepath.ts";
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
  const top = relativeParts(rel, show(rel)).join("/");
  // archive name = root-relative path minus the top's parent directory
  const cut = top === "" ? 0 : top.lastIndexOf("/") + 1;
  const stack: Frame[] = [];

  const topStat = await lstat(joinParts(root, top ? top.split("/") : [])).catch((err) => {
    throw fsError(err, show(top));
  });
  if (top === "") {
    if (!topStat.isDirectory()) throw new PyroError("NOT_A_DIRECTORY", `${shownRoot} is not a directory`);
    stack.push({ relDir: "", names: await list(root, "", show), next: 0 });
  } else {
    const entry = await describe(root, top, top.slice(cut), opts, show, true);
    if (entry) yield entry;
    if (topStat.isDirectory()) stack.push({ relDir: top, names: await list(root, top, show), next: 0 });
  }

  while (stack.length > 0) {
    const frame = stack.at(-1)!;
    if (frame.next >= frame.names.length) {
      stack.pop();
      continue;
    }
    const name = frame.names[frame.next++]!;
    const relPath = frame.relDir ? `${frame.relDir}/${name}` : name;
    if (opts.exclude?.(relPath)) continue;
    const entry = await describe(root, relPath, relPath.slice(cut), opts, show, false);
    if (!entry) continue;
    yield entry;
    if (entry.header.type === "directory") {
      stack.push({ relDir: relPath, names: await list(root, relPath, show), next: 0 });
    }
  }
}

async function list(root: string, relDir: string, show: (r: string) => string): Promise<string[]> {
  const names = await readdir(joinParts(root, relDir ? relDir.split("/") : [])).catch((err) => {
    throw fsError(err, show(relDir));
  });
  return names.sort();
}

/** The tar entry for one path, or undefined if it vanished or is a special file. */
async function describe(
  root: string,
  relPath: string,
  name: string,
  opts: PackOptions,
  show: (r: string) => string,
  required: boolean,
): Promise<TarWriteEntry | undefined> {
  const abs = joinParts(root, relPath.split("/"));
  const st = await lstat(abs).catch((err) => {
    if (!required && err?.code === "ENOENT") return undefined; // deleted while we walked
    throw fsError(err, show(relPath));
  });
  if (!st) return undefined;
  const common = {
    path: name,
    mode: st.mode & 0o7777,
    mtime: Math.floor(st.mtimeMs / 1000),
    ...(opts.owners ? { uid: st.uid, gid: st.gid } : {}),
  };
  if (st.isDirectory()) return { header: { ...common, type: "directory" } };
  if (st.isSymbolicLink()) {
    const target = await readlink(abs).catch((err) => {
      throw fsError(err, show(relPath));
    });
    return { header: { ...common, type: "symlink", linkTarget: target } };
  }
  if (!st.isFile()) return undefined;
  return { header: { ...common, type: "file", size: st.size }, body: readBody(abs, st.size, show(relPath)) };
}

/**
 * Exactly `size` bytes of the file, opened only when the body is pulled (so a cancelled
 * export leaks no descriptor) and through O_NOFOLLOW (a file swapped for a symlink since
 * the lstat fails instead of being followed). Growth past `size` is not read.
 */
async function* readBody(abs: string, size: number, shown: string): AsyncGenerator<Uint8Array> {
  if (size === 0) return;
  const fh = await open(abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK).catch((err) => {
    throw fsError(err, shown);
  });
  try {
    if (!(await fh.stat()).isFile())
      throw new PyroError("IO_ERROR", `${shown} changed type while it was being exported`);
    let pos = 0;
    while (pos < size) {
      const buf = new Uint8Array(Math.min(READ_CHUNK, size - pos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos).catch((err) => {
        throw fsError(err, shown);
      });
      if (bytesRead === 0) throw new PyroError("IO_ERROR", `${shown} shrank while it was being exported`);
      pos += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
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
