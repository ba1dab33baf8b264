/**
 * Archive import/export at the workspace boundary: the destination or source is resolved
 * like any other user path (symlinks inside /workspace followed, escapes refused), then the
 * shared codec does the safe unpack or the lazy pack. Policies are documented in
 * src/protocol/archive/unpack.ts and pack.ts.
 */
import { lstat } from "node:fs/promises";
import {
  type ByteSource,
  ensureDirChain,
  fsError,
  maybeGunzip,
  type PackOptions,
  packTree,
  type UnpackOptions,
  type UnpackResult,
  unpackTar,
} from "../src/protocol/archive/index.ts";
import { displayPath, realRoot, resolveInRoot, WORKSPACE_DISPLAY_ROOT } from "./paths.ts";

/**
 * Extract a tar or tar.gz stream (gzip sniffed) into destPath, creating it if missing.
 * A refused entry fails the import after earlier entries were written (never outside).
 */
export async function importArchive(
  root: string,
  destPath: string,
  source: ByteSource,
  opts: UnpackOptions = {},
): Promise<UnpackResult & { path: string }> {
  const rootReal = await realRoot(root);
  const dest = await resolveInRoot(rootReal, destPath, { followFinalSymlink: true });
  const shown = displayPath(rootReal, dest);
  const parts = dest === rootReal ? [] : dest.slice(rootReal.length + 1).split("/");
  const destReal = await ensureDirChain(rootReal, parts, true, shown);
  const result = await unpackTar(maybeGunzip(source), destReal, opts);
  return { path: shown, ...result };
}

/**
 * A tar stream of the file or directory at path. A final symlink is exported as the link.
 * Names: a file `src/a.txt` → `a.txt`; a directory `src` → `src/...`; /workspace itself →
 * its children unprefixed. Errors while streaming surface as stream errors (PyroError).
 */
export async function exportArchive(
  root: string,
  path: string,
  opts: Pick<PackOptions, "exclude"> = {},
): Promise<ReadableStream<Uint8Array>> {
  const rootReal = await realRoot(root);
  const real = await resolveInRoot(rootReal, path, { followFinalSymlink: false });
  const shown = displayPath(rootReal, real);
  await lstat(real).catch((err) => Promise.reject(fsError(err, shown)));
  const rel = real === rootReal ? "" : real.slice(rootReal.length + 1);
  return packTree(rootReal, rel, { ...opts, shownRoot: WORKSPACE_DISPLAY_ROOT });
}
