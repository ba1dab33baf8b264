/**
 * Archive import/export at the workspace boundary: the destination or source is resolved
 * like any other user path (symlinks inside /workspace followed, escapes refused), then the
 * shared codec does the safe unpack or the lazy pack. Policies are documented in
 * src/protocol/archive/unpack.ts and pack.ts.
 *
 * Race freedom end to end: the user path is resolved through held fds (paths.ts); the codec
 * then works below it through fds too, one component at a time with O_NOFOLLOW
 * (archive/safepath.ts), so a swap of any directory on the way, before or during the
 * transfer, cannot make an import write or an export read outside /workspace.
 */
import {
  type ByteSource,
  fsError,
  maybeGunzip,
  type PackOptions,
  packTree,
  type UnpackOptions,
  type UnpackResult,
  unpackTar,
} from "../src/protocol/archive/index.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { fdPath, mkdirat, O, openat } from "../src/protocol/openat.ts";
import { type CaptureResult, captureBaselineFromImport } from "./baseline.ts";
import { WORKSPACE_DISPLAY_ROOT, withResolved } from "./paths.ts";

function openDir(parent: number, name: string, shown: string): number {
  try {
    return openat(parent, name, O.PATH | O.NOFOLLOW | O.DIRECTORY);
  } catch (err) {
    throw fsError(err, shown);
  }
}

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
  // The destination is resolved and created through held fds (paths.ts) and handed over as
  // /proc/self/fd/N, so a swap of one of its components cannot send the archive elsewhere;
  // entries below it are placed relative to directory fds the codec opens O_NOFOLLOW.
  return withResolved(root, destPath, { followFinalSymlink: true }, async (r) => {
    let destFd = r.fd;
    if (opts.observer && (destFd === undefined || r.parts.length > 0)) {
      throw new PyroError(
        "INVALID_INPUT",
        `a baseline is captured only by an import into /workspace itself, not ${r.shown}`,
      );
    }
    if (destFd === undefined) {
      const parent = r.parentFd(true);
      try {
        mkdirat(parent, r.name, 0o755);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw fsError(err, r.shown);
      }
      destFd = r.fds[r.fds.push(openDir(parent, r.name, r.shown)) - 1]!;
    }
    const result = await unpackTar(maybeGunzip(source), fdPath(destFd), opts);
    return { path: r.shown, ...result };
  });
}

/**
 * Extract a seed into /workspace and capture the diff baseline from the same stream: every
 * file is hashed and its bytes kept raw in the seed pack as they pass, so the capture reads
 * nothing back (guest/baseline.ts
 * captureBaselineFromImport). The baseline equals the one `baseline.capture` would take after
 * the import.
 */
export async function importArchiveWithBaseline(
  root: string,
  stateDir: string,
  destPath: string,
  source: ByteSource,
  opts: UnpackOptions = {},
): Promise<UnpackResult & { path: string; baseline: CaptureResult & { files_read: number } }> {
  const { result, baseline } = await captureBaselineFromImport(root, stateDir, (observer) =>
    importArchive(root, destPath, source, { ...opts, observer }),
  );
  return { ...result, baseline };
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
  // The source is resolved (symlinks inside followed, a final one kept) and must exist;
  // the codec then re-walks the canonical components from the root with O_NOFOLLOW, so a
  // component swapped for a symlink in between fails the export instead of redirecting it.
  const { rootReal, rel } = await withResolved(root, path, { followFinalSymlink: false }, (r) => {
    if (r.fd === undefined) throw fsError({ code: "ENOENT" }, r.shown);
    return { rootReal: r.rootReal, rel: r.parts.join("/") };
  });
  return packTree(rootReal, rel, { ...opts, shownRoot: WORKSPACE_DISPLAY_ROOT });
}
