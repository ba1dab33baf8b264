/**
 * Offline tools for a STOPPED workspace's data disk (`$PYRO_HOME/workspaces/<id>/disk.ext4`):
 * list and read files under /workspace, and export a scrubbed copy of the image. Nothing is
 * mounted and no VM runs: the ext4 image is read with debugfs (see debugfs.ts), so these
 * work without KVM, without root, and without trusting the kernel's ext4 driver with a disk
 * the guest could have crafted. See docs/disk-tools.md.
 *
 * Callers must make sure the workspace is stopped and stays stopped (hold its lock):
 * debugfs sees the last state written to the image, and the image must not change under
 * it. A disk whose journal needs recovery (a running guest, or one that did not shut down
 * cleanly) is refused with WORKSPACE_NOT_STOPPED unless `allowUnclean` is set.
 *
 * Results use the agent's result shapes (src/protocol/messages.ts) so a stopped workspace
 * reads like a running one.
 */
import type { ResultOf } from "../../protocol/call.ts";
import { PyroError } from "../../protocol/errors.ts";
import {
  LIST_DEFAULT_ENTRIES,
  LIST_MAX_ENTRIES,
  READ_DEFAULT_BYTES,
  READ_MAX_BYTES,
} from "../../protocol/limits.ts";
import {
  DiskReader,
  debugfsCat,
  type Inode,
  isWhiteout,
  type LsEntry,
  readSuperblock,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  uncleanError,
} from "./debugfs.ts";
import { displayOf, fromBytes, resolve, typeOf } from "./paths.ts";

export { type ExportOptions, type ExportResult, exportDisk, SCRUB_RULES } from "./export.ts";
export { WORKSPACE_ROOT } from "./paths.ts";

/** The shapes of the agent's fs.stat and fs.list results (src/protocol/messages.ts). */
export type DiskFileStat = ResultOf<"fs.stat">;
export type ArtifactType = DiskFileStat["artifact_type"];
export type DiskListResult = ResultOf<"fs.list">;

/** fs.read's result with the content itself instead of its byte count. */
export type DiskReadResult = Omit<ResultOf<"fs.read">, "bytes"> & { content: Uint8Array };

export interface OfflineOptions {
  /**
   * Read a disk whose journal needs recovery anyway. The journal is not replayed (the
   * image is never written), so the view is the last checkpoint and may miss recent changes.
   */
  allowUnclean?: boolean;
}

function intOption(value: number | undefined, dflt: number, min: number, max: number, name: string): number {
  const v = value ?? dflt;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new PyroError("INVALID_INPUT", `${name} must be an integer from ${min} to ${max}`);
  }
  return v;
}

/** Open an image for offline reading: an ext4 superblock and a clean journal. */
export function openDisk(diskPath: string, opts: OfflineOptions = {}): DiskReader {
  const sb = readSuperblock(diskPath);
  if (sb.needsRecovery && !opts.allowUnclean) throw uncleanError(diskPath);
  return new DiskReader(diskPath, sb);
}

function artifactType(mode: number): ArtifactType {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    default:
      return "other";
  }
}

function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? new Date(0).toISOString() : d.toISOString();
}

function describe(names: string[], inode: Inode, linkTarget?: string): DiskFileStat {
  const out: DiskFileStat = {
    path: displayOf(names),
    artifact_type: artifactType(inode.mode),
    size_bytes: inode.size,
    mode: (inode.mode & 0o7777).toString(8).padStart(4, "0"),
    mtime: isoTime(inode.mtimeMs),
  };
  if (linkTarget !== undefined) out.link_target = fromBytes(linkTarget);
  return out;
}

interface Node {
  e: LsEntry;
  names: string[];
  children?: Node[];
}

function nodesOf(entries: LsEntry[], parentNames: string[]): Node[] {
  const nodes = entries.map((e) => ({
    e,
    names: [...parentNames, fromBytes(e.name)],
    key: fromBytes(e.name),
  }));
  // the guest sorts readdir names with the default JS order; raw bytes break ties
  nodes.sort((a, b) =>
    a.key < b.key ? -1 : a.key > b.key ? 1 : a.e.name < b.e.name ? -1 : a.e.name > b.e.name ? 1 : 0,
  );
  return nodes.map(({ e, names }) => ({ e, names }));
}

function* preorder(nodes: Node[]): Generator<Node> {
  for (const n of nodes) {
    yield n;
    if (n.children) yield* preorder(n.children);
  }
}

/**
 * A lower bound of each node's position among the listed entries: entries before it that
 * are certainly not whiteouts (anything but a character device).
 */
function lowerBounds(top: Node[]): Map<Node, number> {
  const lb = new Map<Node, number>();
  let count = 0;
  for (const n of preorder(top)) {
    lb.set(n, count);
    if (typeOf(n.e.mode) !== S_IFCHR) count++;
  }
  return lb;
}

/**
 * List a directory under /workspace (following a final symlink only if it stays inside).
 * Recursive listings are depth-first with sorted names, like the guest's, never descend
 * into symlinks, and stop after `maxEntries` (`truncated`). Whiteouts are hidden.
 */
export async function listDisk(
  diskPath: string,
  path: string,
  opts: { recursive?: boolean; maxEntries?: number } & OfflineOptions = {},
): Promise<DiskListResult> {
  const max = intOption(opts.maxEntries, LIST_DEFAULT_ENTRIES, 1, LIST_MAX_ENTRIES, "max_entries");
  const disk = openDisk(diskPath, opts);
  const target = await resolve(disk, path, { followFinalSymlink: true });
  const shown = displayOf(target.names);
  if (target.ino === 0) return { path: shown, entries: [], truncated: false };
  if (typeOf(target.mode) !== S_IFDIR) {
    throw new PyroError("NOT_A_DIRECTORY", `not a directory: ${shown}`, { details: { path: shown } });
  }

  const top = nodesOf(await disk.ls(target.ino), target.names);
  if (opts.recursive) {
    // Breadth-first, one debugfs process per level, expanding only directories that can
    // still hold one of the first `max` entries in depth-first order.
    const seen = new Set([target.ino]); // a crafted image may loop
    let frontier = top.filter((n) => typeOf(n.e.mode) === S_IFDIR);
    while (frontier.length > 0) {
      const lb = lowerBounds(top);
      const expand = frontier.filter((n) => lb.get(n)! < max && !seen.has(n.e.ino));
      for (const n of expand) seen.add(n.e.ino);
      const lists = await disk.lsMany(expand.map((n) => n.e.ino));
      frontier = [];
      for (const n of expand) {
        n.children = nodesOf(lists.get(n.e.ino)!, n.names);
        frontier.push(...n.children.filter((c) => typeOf(c.e.mode) === S_IFDIR));
      }
    }
  }

  const lb = lowerBounds(top);
  const wanted: LsEntry[] = [];
  for (const n of preorder(top)) if (lb.get(n)! < max || typeOf(n.e.mode) === S_IFCHR) wanted.push(n.e);
  const inodes = await disk.inodes(wanted);

  const picked: Node[] = [];
  let truncated = false;
  for (const n of preorder(top)) {
    if (typeOf(n.e.mode) === S_IFCHR && isWhiteout(inodes.get(n.e.ino)!)) continue;
    if (picked.length >= max) {
      truncated = true;
      break;
    }
    picked.push(n);
  }
  const links = await disk.readlinks(
    picked.map((n) => inodes.get(n.e.ino)!).filter((i) => (i.mode & S_IFMT) === S_IFLNK),
  );
  const entries = picked.map((n) => {
    const inode = inodes.get(n.e.ino)!;
    return describe(n.names, inode, (inode.mode & S_IFMT) === S_IFLNK ? links.get(inode.ino) : undefined);
  });
  return { path: shown, entries, truncated };
}

/** Metadata of one path under /workspace (a final symlink is described, not followed). */
export async function statDisk(
  diskPath: string,
  path: string,
  opts: OfflineOptions = {},
): Promise<DiskFileStat> {
  const disk = openDisk(diskPath, opts);
  const target = await resolve(disk, path, { followFinalSymlink: false });
  if (target.ino === 0) {
    return {
      path: displayOf([]),
      artifact_type: "directory",
      size_bytes: 0,
      mode: "0755",
      mtime: isoTime(0),
    };
  }
  const inode = await disk.inode(target.ino, target.mode);
  const link = (inode.mode & S_IFMT) === S_IFLNK ? await disk.readlink(inode) : undefined;
  return describe(target.names, inode, link);
}

/**
 * Read a regular file under /workspace: at most `maxBytes` from `offset`. A final symlink
 * is followed only if it stays inside /workspace (PATH_OUTSIDE_WORKSPACE otherwise);
 * directories are IS_A_DIRECTORY, devices, fifos and sockets INVALID_INPUT.
 */
export async function readDisk(
  diskPath: string,
  path: string,
  opts: { maxBytes?: number; offset?: number } & OfflineOptions = {},
): Promise<DiskReadResult> {
  const maxBytes = intOption(opts.maxBytes, READ_DEFAULT_BYTES, 0, READ_MAX_BYTES, "max_bytes");
  const offset = intOption(opts.offset, 0, 0, Number.MAX_SAFE_INTEGER, "offset");
  const disk = openDisk(diskPath, opts);
  const target = await resolve(disk, path, { followFinalSymlink: true });
  const shown = displayOf(target.names);
  if (target.ino === 0 || typeOf(target.mode) === S_IFDIR) {
    throw new PyroError("IS_A_DIRECTORY", `is a directory: ${shown}`, { details: { path: shown } });
  }
  if (typeOf(target.mode) !== S_IFREG) {
    throw new PyroError("INVALID_INPUT", `not a regular file: ${shown}`, { details: { path: shown } });
  }
  const inode = await disk.inode(target.ino, target.mode);
  if ((inode.mode & S_IFMT) !== S_IFREG) throw new PyroError("IO_ERROR", `inode type mismatch: ${shown}`);
  const want = Math.max(0, Math.min(maxBytes, inode.size - offset));
  const { bytes, errors } = await debugfsCat(diskPath, target.ino, offset, want);
  if (bytes.byteLength < want) {
    throw new PyroError(
      "IO_ERROR",
      `cannot read ${shown} from the disk: ${errors.join("; ") || "short read"}`,
      {
        details: { path: shown, errors },
      },
    );
  }
  const truncated = offset + bytes.byteLength < inode.size;
  return {
    path: shown,
    size_bytes: inode.size,
    content: bytes,
    truncated,
    encoding_hint: encodingHint(bytes, truncated, offset > 0),
  };
}

export { encodingHint } from "../../protocol/encoding.ts";

import { encodingHint } from "../../protocol/encoding.ts";
