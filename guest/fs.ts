/**
 * File operations on the workspace root. Every path goes through resolveInRoot (symlinks
 * that lead outside are PATH_OUTSIDE_WORKSPACE), results are plain snake_case objects, and
 * errors name `/workspace/...` paths only.
 *
 * Symlink policy: links inside the workspace are followed on the way to a target (as a
 * shell would); stat, remove and move act on a final symlink itself; read, write, list and
 * mkdir follow a final symlink only if it stays inside. Writes never go *into* an existing
 * inode: they create a temp sibling (O_EXCL|O_NOFOLLOW) and rename it over the target, so a
 * hardlink to something outside the workspace is replaced rather than modified.
 *
 * Caps: read max_bytes <= 16 MiB (larger requests are INVALID_INPUT; read the rest with
 * offset); write <= 16 MiB (FILE_TOO_LARGE); list max_entries <= 100,000.
 */
import { constants as C, type Stats } from "node:fs";
import { lstat, mkdir, open, readdir, readlink, rename, rm, rmdir, unlink } from "node:fs/promises";
import {
  CREATE_EXCL,
  ensureDirChain,
  fsError,
  safeMode,
  tempName,
  writeAll,
} from "../src/protocol/archive/index.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { displayPath, realRoot, resolveInRoot } from "./paths.ts";

export const READ_DEFAULT_BYTES = 65536;
export const READ_MAX_BYTES = 16 * 1024 * 1024;
export const WRITE_MAX_BYTES = 16 * 1024 * 1024;
export const LIST_DEFAULT_ENTRIES = 10_000;
export const LIST_MAX_ENTRIES = 100_000;

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

async function describe(root: string, real: string, st?: Stats): Promise<FileStat> {
  const shown = displayPath(root, real);
  const s = st ?? (await lstatShown(real, shown));
  const out: FileStat = {
    path: shown,
    artifact_type: artifactType(s),
    size_bytes: s.size,
    mode: (s.mode & 0o7777).toString(8).padStart(4, "0"),
    mtime: s.mtime.toISOString(),
  };
  if (s.isSymbolicLink()) out.link_target = await readlink(real).catch(() => "");
  return out;
}

function intOption(value: number | undefined, dflt: number, min: number, max: number, name: string): number {
  const v = value ?? dflt;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new PyroError("INVALID_INPUT", `${name} must be an integer from ${min} to ${max}`);
  }
  return v;
}

/** Real root, real path and the relative components of the latter. */
async function locate(root: string, path: string, follow: boolean) {
  const rootReal = await realRoot(root);
  const real = await resolveInRoot(rootReal, path, { followFinalSymlink: follow });
  const parts = real === rootReal ? [] : real.slice(rootReal.length).split("/").filter(Boolean);
  return { rootReal, real, parts, shown: displayPath(rootReal, real) };
}

async function lstatShown(real: string, shown: string): Promise<Stats> {
  try {
    return await lstat(real);
  } catch (err) {
    throw fsError(err, shown);
  }
}

async function lstatOrUndefined(real: string, shown: string): Promise<Stats | undefined> {
  return lstat(real).catch((err) => {
    if (err?.code === "ENOENT") return undefined;
    throw fsError(err, shown);
  });
}

export async function statPath(root: string, path: string): Promise<FileStat> {
  const { rootReal, real } = await locate(root, path, false);
  return describe(rootReal, real);
}

export async function listPath(
  root: string,
  path: string,
  opts: { recursive?: boolean; maxEntries?: number } = {},
): Promise<{ path: string; entries: FileStat[]; truncated: boolean }> {
  const max = intOption(opts.maxEntries, LIST_DEFAULT_ENTRIES, 1, LIST_MAX_ENTRIES, "max_entries");
  const { rootReal, real, shown } = await locate(root, path, true);
  const st = await lstatShown(real, shown);
  if (!st.isDirectory())
    throw new PyroError("NOT_A_DIRECTORY", `not a directory: ${shown}`, { details: { path: shown } });

  // Depth-first with sorted names: each directory's contents follow it, and the first
  // max entries are the same ones every time.
  const entries: FileStat[] = [];
  const stack: { dir: string; names: string[]; next: number }[] = [];
  const open = async (dir: string) => {
    const names = await readdir(dir).catch((err) => Promise.reject(fsError(err, displayPath(rootReal, dir))));
    stack.push({ dir, names: names.sort(), next: 0 });
  };
  await open(real);
  let truncated = false;
  while (stack.length > 0) {
    const top = stack.at(-1)!;
    if (top.next >= top.names.length) {
      stack.pop();
      continue;
    }
    const child = `${top.dir}/${top.names[top.next++]}`;
    const cst = await lstat(child).catch(() => undefined); // vanished meanwhile: skip
    if (!cst) continue;
    if (entries.length >= max) {
      truncated = true;
      break;
    }
    entries.push(await describe(rootReal, child, cst));
    if (opts.recursive && cst.isDirectory()) await open(child); // never descends through symlinks
  }
  return { path: shown, entries, truncated };
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
  const { real, shown } = await locate(root, path, true);
  // lstat first: opening a fifo or device could block or have side effects
  const st = await lstatShown(real, shown);
  if (st.isDirectory()) throw fsError({ code: "EISDIR" }, shown);
  if (!st.isFile())
    throw new PyroError("INVALID_INPUT", `not a regular file: ${shown}`, { details: { path: shown } });
  const fh = await open(real, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK).catch((err) =>
    Promise.reject(fsError(err, shown)),
  );
  try {
    const fst = await fh.stat();
    if (!fst.isFile()) throw new PyroError("INVALID_INPUT", `not a regular file: ${shown}`);
    const want = Math.max(0, Math.min(maxBytes, fst.size - offset));
    const buf = new Uint8Array(want);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await fh.read(buf, got, want - got, offset + got);
      if (bytesRead === 0) break; // shrank meanwhile
      got += bytesRead;
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
    await fh.close();
  }
}

export { encodingHint } from "../src/protocol/encoding.ts";

import { encodingHint } from "../src/protocol/encoding.ts";

export async function writeFile(
  root: string,
  path: string,
  data: Uint8Array,
  opts: { mode?: number; createParents?: boolean; maxBytes?: number } = {},
): Promise<FileStat> {
  const maxBytes = intOption(opts.maxBytes, WRITE_MAX_BYTES, 0, WRITE_MAX_BYTES, "max_bytes");
  if (opts.mode !== undefined) intOption(opts.mode, 0, 0, 0o7777, "mode");
  const { rootReal, parts, shown } = await locate(root, path, true);
  if (data.byteLength > maxBytes) {
    throw new PyroError("FILE_TOO_LARGE", `write of ${data.byteLength} bytes exceeds ${maxBytes}: ${shown}`, {
      details: { path: shown, limit: maxBytes },
    });
  }
  if (parts.length === 0) throw fsError({ code: "EISDIR" }, shown);
  const parent = await ensureDirChain(rootReal, parts.slice(0, -1), opts.createParents ?? true, shown);
  const target = `${parent}/${parts.at(-1)}`;
  const existing = await lstatOrUndefined(target, shown);
  if (existing?.isDirectory()) throw fsError({ code: "EISDIR" }, shown);
  const mode = safeMode(opts.mode ?? (existing?.isFile() ? existing.mode & 0o7777 : 0o644));

  const tmp = `${parent}/${tempName()}`;
  try {
    const fh = await open(tmp, CREATE_EXCL, 0o600);
    try {
      await writeAll(fh, data);
      await fh.chmod(mode);
      // keep the owner of the file being replaced (the agent may run as root)
      if (existing?.isFile()) await fh.chown(existing.uid, existing.gid).catch(() => {});
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw fsError(err, shown);
  }
  return describe(rootReal, target);
}

export async function makeDirectory(
  root: string,
  path: string,
  opts: { parents?: boolean } = {},
): Promise<FileStat> {
  const { rootReal, real, parts, shown } = await locate(root, path, true);
  const existing = await lstatOrUndefined(real, shown);
  if (existing) {
    if (existing.isDirectory() && opts.parents) return describe(rootReal, real, existing);
    throw fsError({ code: "EEXIST" }, shown);
  }
  const parent = await ensureDirChain(rootReal, parts.slice(0, -1), opts.parents ?? false, shown);
  const target = `${parent}/${parts.at(-1)}`;
  await mkdir(target, 0o755).catch((err) => Promise.reject(fsError(err, shown)));
  return describe(rootReal, target);
}

export async function removePath(
  root: string,
  path: string,
  opts: { recursive?: boolean } = {},
): Promise<{ path: string; artifact_type: ArtifactType; removed: true }> {
  const { rootReal, real, shown } = await locate(root, path, false);
  if (real === rootReal) throw new PyroError("INVALID_INPUT", `refusing to remove ${shown} itself`);
  const st = await lstatShown(real, shown);
  try {
    if (!st.isDirectory()) await unlink(real);
    // rm -r works on lstat: it removes links inside the tree, never what they point to
    else if (opts.recursive) await rm(real, { recursive: true, force: false });
    else await rmdir(real);
  } catch (err) {
    const e = fsError(err, shown);
    if (
      (err as NodeJS.ErrnoException)?.code === "ENOTEMPTY" ||
      (err as NodeJS.ErrnoException)?.code === "EEXIST"
    ) {
      throw new PyroError("INVALID_INPUT", `directory not empty: ${shown}`, {
        details: { path: shown },
        hint: "pass recursive to remove a directory and its contents",
      });
    }
    throw e;
  }
  return { path: shown, artifact_type: artifactType(st), removed: true };
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
  const src = await locate(root, from, false);
  const dst = await locate(root, to, false);
  if (src.parts.length === 0 || dst.parts.length === 0) {
    throw new PyroError(
      "INVALID_INPUT",
      `cannot move ${src.parts.length === 0 ? src.shown : dst.shown} itself`,
    );
  }
  const sst = await lstatShown(src.real, src.shown);
  if (dst.real === src.real)
    return { ...(await describe(src.rootReal, src.real, sst)), moved_from: src.shown };
  if (dst.real.startsWith(`${src.real}/`)) {
    throw new PyroError("INVALID_INPUT", `cannot move ${src.shown} into itself (${dst.shown})`);
  }
  const parent = await ensureDirChain(dst.rootReal, dst.parts.slice(0, -1), false, dst.shown);
  const target = `${parent}/${dst.parts.at(-1)}`;
  const dstSt = await lstatOrUndefined(target, dst.shown);
  if (dstSt) {
    if (!opts.overwrite) throw fsError({ code: "EEXIST" }, dst.shown);
    if (dstSt.isDirectory() && !sst.isDirectory()) throw fsError({ code: "EISDIR" }, dst.shown);
    if (!dstSt.isDirectory() && sst.isDirectory()) throw fsError({ code: "ENOTDIR" }, dst.shown);
  }
  await rename(src.real, target).catch((err) => Promise.reject(fsError(err, dst.shown)));
  return { ...(await describe(dst.rootReal, target)), moved_from: src.shown };
}
