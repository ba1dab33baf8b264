/**
 * Export a stopped workspace's disk: a sparse copy of the ext4 image with runtime-only
 * state removed from the COPY (the source is only ever read), checked clean by e2fsck.
 *
 * Steps: cp --sparse=always --reflink=auto to a temp file beside the output → (journal
 * replay on the copy, only with allowUnclean) → e2fsck -fn (refuse a damaged disk) →
 * scrub with `debugfs -w` → e2fsck -fp [-E discard] (settle counters after the edits; the
 * discard punches holes where freed blocks were, so deleted data does not travel and the
 * file stays small) → e2fsck -fn must be clean → fsync → publish (link, or rename when
 * overwriting). See docs/disk-tools.md for the scrub list and why each entry is safe.
 */
import {
  chmodSync,
  closeSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve as resolvePath } from "node:path";
import { PyroError } from "../../protocol/errors.ts";
import {
  DiskReader,
  debugfsBatch,
  debugfsRequest,
  findTool,
  type LsEntry,
  readSuperblock,
  runTool,
  S_IFDIR,
  S_IFSOCK,
  uncleanError,
} from "./debugfs.ts";
import { fromBytes, typeOf } from "./paths.ts";

export interface ScrubRule {
  /** directory on the disk (from the disk's root, not the guest's) */
  dir: string;
  /** "contents": everything below `dir`; "sockets": socket files anywhere below it */
  remove: "contents" | "sockets";
  why: string;
}

/** What an export removes. The directories themselves are kept. */
export const SCRUB_RULES: readonly ScrubRule[] = [
  {
    dir: "/work",
    remove: "contents",
    why: "overlayfs workdir: the kernel's scratch space for copy-up and rename, emptied at every mount; leftovers are half-done operations of a guest that stopped",
  },
  {
    dir: "/upper/run",
    remove: "contents",
    why: "/run is a tmpfs in the guest; anything in the upper layer is hidden under it and is per-boot state (pid files, sockets) by definition",
  },
  {
    dir: "/upper/tmp",
    remove: "contents",
    why: "/tmp is a tmpfs in the guest; files here are hidden under the mount",
  },
  {
    dir: "/upper/dev",
    remove: "contents",
    why: "/dev is devtmpfs in the guest; device nodes in the upper layer are never visible",
  },
  {
    dir: "/upper/proc",
    remove: "contents",
    why: "/proc is procfs in the guest; nothing written below it reaches the disk legitimately",
  },
  {
    dir: "/upper/sys",
    remove: "contents",
    why: "/sys is sysfs in the guest; nothing written below it reaches the disk legitimately",
  },
  {
    dir: "/pyro-state",
    remove: "sockets",
    why: "agent state is kept (baseline repository), but a socket is an endpoint of a process that no longer exists",
  },
];

export interface ExportOptions {
  /** remove runtime-only state from the copy (default true) */
  scrub?: boolean;
  /** replace an existing output file (default false: ALREADY_EXISTS) */
  overwrite?: boolean;
  /** punch holes for free blocks in the copy (default: same as scrub) */
  discardFree?: boolean;
  /** export a disk whose journal needs recovery: the journal is replayed on the copy */
  allowUnclean?: boolean;
}

export interface ExportResult {
  output: string;
  /** apparent size of the image */
  size_bytes: number;
  /** bytes the sparse copy actually occupies on the host */
  allocated_bytes: number;
  /** per scrub rule that applied: disk directory and how many entries were removed */
  scrubbed: { dir: string; removed: number }[];
}

const FSCK_CONF =
  "[options]\n\t# an image check: host/guest clock differences are not errors\n\tbroken_system_clock = true\n";

function ioError(message: string, details: Record<string, unknown> = {}, cause?: unknown): PyroError {
  return new PyroError("IO_ERROR", message, { details, cause });
}

function tail(text: string, lines = 15): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

function sameFile(a: Stats, b: Stats) {
  return a.dev === b.dev && a.ino === b.ino;
}

export async function exportDisk(
  diskPath: string,
  outPath: string,
  opts: ExportOptions = {},
): Promise<ExportResult> {
  const scrub = opts.scrub ?? true;
  const discard = opts.discardFree ?? scrub;
  const sb = readSuperblock(diskPath);
  if (sb.needsRecovery && !opts.allowUnclean) throw uncleanError(diskPath);
  const src = statSync(diskPath);
  const output = resolvePath(outPath);
  const parent = dirname(output);
  try {
    if (!statSync(parent).isDirectory()) throw Object.assign(new Error(), { code: "ENOTDIR" });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PyroError(
      code === "ENOTDIR" ? "NOT_A_DIRECTORY" : "FILE_NOT_FOUND",
      `output directory does not exist: ${parent}`,
      { details: { path: parent } },
    );
  }
  const existing = (() => {
    try {
      return lstatSync(output);
    } catch {
      return undefined;
    }
  })();
  if (existing) {
    if (existing.isDirectory()) {
      throw new PyroError("IS_A_DIRECTORY", `output is a directory: ${output}`, {
        details: { path: output },
      });
    }
    if (sameFile(existing, src)) {
      throw new PyroError("INVALID_INPUT", "output is the workspace disk itself", {
        details: { path: output },
      });
    }
    if (!opts.overwrite) {
      throw new PyroError("ALREADY_EXISTS", `output already exists: ${output}`, {
        details: { path: output },
        hint: "choose another name or pass overwrite",
      });
    }
  }

  const tmp = join(
    parent,
    `.${basename(output)}.pyro-export-${process.pid}-${Buffer.from(crypto.getRandomValues(new Uint8Array(4))).toString("hex")}`,
  );
  const confDir = mkdtempSync(join(tmpdir(), "pyro-e2fsck-"));
  const confPath = join(confDir, "e2fsck.conf");
  writeFileSync(confPath, FSCK_CONF);
  const fsckEnv = { E2FSCK_CONFIG: confPath, LC_ALL: "C", LANG: "C" };
  const e2fsck = findTool("e2fsck");
  const fsck = (args: string[]) => runTool([e2fsck, ...args, tmp], { env: fsckEnv });
  try {
    const cp = await runTool(["cp", "--sparse=always", "--reflink=auto", "--", diskPath, tmp]);
    if (cp.exitCode !== 0)
      throw ioError(`cannot copy the disk image: ${tail(cp.output, 3)}`, { disk: diskPath });
    chmodSync(tmp, 0o600);
    const after = statSync(diskPath);
    if (after.size !== src.size || after.mtimeMs !== src.mtimeMs || after.ctimeMs !== src.ctimeMs) {
      throw new PyroError("WORKSPACE_NOT_STOPPED", "the workspace disk changed while it was being copied", {
        details: { disk: diskPath },
        hint: "stop the workspace before exporting it",
      });
    }

    if (readSuperblock(tmp).needsRecovery) {
      const r = await fsck(["-E", "journal_only", "-p"]);
      if (r.exitCode & ~1)
        throw ioError(`journal recovery failed: ${tail(r.output)}`, { exit_code: r.exitCode });
    }
    const pre = await fsck(["-f", "-n"]);
    if (pre.exitCode !== 0) {
      throw new PyroError("IO_ERROR", "the workspace disk has filesystem errors; not exporting it", {
        details: { disk: diskPath, exit_code: pre.exitCode, e2fsck: tail(pre.output) },
        hint: "repair a copy with e2fsck -fy, or start the workspace to let the guest's kernel replay and check it",
      });
    }

    const scrubbed = scrub ? await scrubImage(tmp) : [];

    if (scrub || discard) {
      const fix = await fsck(["-f", "-p", ...(discard ? ["-E", "discard"] : [])]);
      if (fix.exitCode & ~1) {
        throw ioError(`e2fsck could not settle the scrubbed copy: ${tail(fix.output)}`, {
          exit_code: fix.exitCode,
        });
      }
    }
    const post = await fsck(["-f", "-n"]);
    if (post.exitCode !== 0) {
      throw ioError("the exported image does not check clean", {
        exit_code: post.exitCode,
        e2fsck: tail(post.output),
      });
    }

    const fd = openSync(tmp, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    publish(tmp, output, opts.overwrite === true);
    const st = statSync(output);
    return { output, size_bytes: st.size, allocated_bytes: st.blocks * 512, scrubbed };
  } finally {
    rmSync(tmp, { force: true });
    rmSync(confDir, { recursive: true, force: true });
  }
}

function publish(tmp: string, output: string, overwrite: boolean) {
  if (overwrite) {
    renameSync(tmp, output);
    return;
  }
  try {
    linkSync(tmp, output); // fails if the name appeared meanwhile: never clobber
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") {
      throw new PyroError("ALREADY_EXISTS", `output already exists: ${output}`, {
        details: { path: output },
      });
    }
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw err;
    // no hard links on this filesystem: check-then-rename is the best we can do
    try {
      lstatSync(output);
      throw new PyroError("ALREADY_EXISTS", `output already exists: ${output}`, {
        details: { path: output },
      });
    } catch (e) {
      if (e instanceof PyroError) throw e;
    }
    renameSync(tmp, output);
    return;
  }
  unlinkSync(tmp);
}

// ---------------------------------------------------------------- scrubbing

interface Victim {
  /** directory holding the entry */
  dirIno: number;
  /** raw path of that directory on the disk */
  dirPath: string;
  entry: LsEntry;
  depth: number;
}

/** The disk directory at `path`, walking real directories only (no symlinks, no whiteouts). */
async function findDir(disk: DiskReader, path: string): Promise<number | undefined> {
  let ino = 2;
  for (const name of path.split("/").filter(Boolean)) {
    const e = (await disk.ls(ino)).find((x) => x.name === name);
    if (!e || typeOf(e.mode) !== S_IFDIR) return undefined;
    ino = e.ino;
  }
  return ino;
}

/** Everything below a directory, breadth-first (one debugfs process per level). */
async function subtree(disk: DiskReader, rootIno: number, rootPath: string): Promise<Victim[]> {
  const all: Victim[] = [];
  const seen = new Set([rootIno]);
  let level = [{ ino: rootIno, path: rootPath }];
  for (let depth = 0; level.length > 0; depth++) {
    const lists = await disk.lsMany(level.map((d) => d.ino));
    const next: typeof level = [];
    for (const d of level) {
      for (const entry of lists.get(d.ino)!) {
        all.push({ dirIno: d.ino, dirPath: d.path, entry, depth });
        if (typeOf(entry.mode) === S_IFDIR && !seen.has(entry.ino)) {
          seen.add(entry.ino);
          next.push({ ino: entry.ino, path: `${d.path}/${entry.name}` });
        }
      }
    }
    if (all.length > 10_000_000) throw ioError("too many files to scrub");
    level = next;
  }
  return all;
}

async function victimsOf(disk: DiskReader, rule: ScrubRule): Promise<Victim[] | undefined> {
  const ino = await findDir(disk, rule.dir);
  if (ino === undefined) return undefined;
  const all = await subtree(disk, ino, rule.dir);
  return rule.remove === "contents" ? all : all.filter((v) => typeOf(v.entry.mode) === S_IFSOCK);
}

const quote = (raw: string) => `"${raw.replaceAll('"', '""')}"`;

/** Remove the scrub rules' victims from an image (a private copy) with debugfs -w. */
export async function scrubImage(image: string): Promise<{ dir: string; removed: number }[]> {
  const disk = new DiskReader(image);
  const plan: { rule: ScrubRule; victims: Victim[] }[] = [];
  for (const rule of SCRUB_RULES) {
    const victims = await victimsOf(disk, rule);
    if (victims) plan.push({ rule, victims });
  }

  // deepest first, so each directory is empty by the time it is removed
  const ordered = plan.flatMap((p) => p.victims).sort((a, b) => b.depth - a.depth);
  let batch: string[] = [];
  let cwd = -1;
  const flush = async () => {
    if (batch.length === 0) return;
    const r = await debugfsBatch(image, batch, { write: true });
    batch = [];
    cwd = -1;
    if (r.errors.length) throw ioError(`scrubbing failed: ${r.errors.slice(0, 5).join("; ")}`);
  };
  for (const v of ordered) {
    const cmd = typeOf(v.entry.mode) === S_IFDIR ? "rmdir" : "rm";
    if (v.entry.name.includes("\0"))
      throw ioError(`cannot scrub a name with a NUL byte in ${fromBytes(v.dirPath)}`);
    if (/[\r\n]/.test(v.entry.name)) {
      // debugfs cuts batch lines at CR/LF: one -R request with the absolute path instead
      // (every directory on it is a real directory, found by the walk above)
      await flush();
      const r = await debugfsRequest(image, `${cmd} ${quote(`${v.dirPath}/${v.entry.name}`)}`, {
        write: true,
      });
      if (r.errors.length) throw ioError(`scrubbing failed: ${r.errors.slice(0, 5).join("; ")}`);
      continue;
    }
    if (cwd !== v.dirIno) {
      batch.push(`cd <${v.dirIno}>`);
      cwd = v.dirIno;
    }
    batch.push(`${cmd} ${quote(v.entry.name)}`);
    if (batch.length >= 5000) await flush();
  }
  await flush();

  // verify on a fresh view of the copy
  const check = new DiskReader(image);
  for (const { rule } of plan) {
    const left = (await victimsOf(check, rule)) ?? [];
    if (left.length) {
      throw ioError(`scrubbing left ${left.length} entries in ${rule.dir}`, {
        left: left.slice(0, 10).map((v) => fromBytes(`${v.dirPath}/${v.entry.name}`)),
      });
    }
  }
  return plan.map((p) => ({ dir: p.rule.dir, removed: p.victims.length }));
}
