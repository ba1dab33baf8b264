/**
 * Crossing the host boundary: seeding/sync (host dir or tar → /workspace) and export
 * (/workspace path → host path). Both stream tar through the supervisor with bounded
 * buffers; export unpacks with the safe extractor into a staging dir beside the output and
 * renames it into place, so nothing is ever written outside the given host path.
 */
import {
  closeSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fault } from "../base/fault.ts";
import { packTree } from "../protocol/archive/pack.ts";
import { unpackTar } from "../protocol/archive/unpack.ts";
import type { ResultOf } from "../protocol/call.ts";
import { PyroError } from "../protocol/errors.ts";
import { Channel } from "../protocol/frame.ts";
import { AsyncQueue } from "../protocol/queue.ts";
import { callWorkspace } from "./client.ts";
import { pidAlive } from "./lock.ts";
import type { WorkspaceRecord } from "./record.ts";

/** Contract: seed/sync archive upload timeout. */
export const UPLOAD_TIMEOUT_MS = 60_000;

export type SeedKind = "directory" | "tar_archive";

export function classifySource(hostPath: string): { path: string; kind: SeedKind } {
  const path = resolve(hostPath);
  if (!existsSync(path)) throw new PyroError("FILE_NOT_FOUND", `no such file or directory: ${hostPath}`);
  const st = statSync(path);
  if (st.isDirectory()) return { path, kind: "directory" };
  if (st.isFile() && /\.(tar|tar\.gz|tgz)$/i.test(path)) return { path, kind: "tar_archive" };
  throw new PyroError("INVALID_INPUT", `${hostPath}: give a directory or a .tar, .tar.gz or .tgz archive`);
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(
      () => rej(new PyroError("GUEST_TIMEOUT", `${what} did not finish within ${ms / 1000} s`)),
      ms,
    );
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Stream a host directory or archive into the workspace at `dest`. */
export async function importIntoWorkspace(
  home: string,
  r: WorkspaceRecord,
  hostPath: string,
  dest = "/workspace",
  opts: ImportOptions = {},
): Promise<ImportResult & { kind: SeedKind }> {
  const src = classifySource(hostPath);
  const body =
    src.kind === "directory"
      ? packTree(src.path, "")
      : (Bun.file(src.path).stream() as ReadableStream<Uint8Array>);
  return { kind: src.kind, ...(await importTar(home, r, body, dest, opts)) };
}

export interface ImportOptions {
  /**
   * Capture the diff baseline from the same stream (a seeded create; dest must be /workspace):
   * the agent stores each file's blob as its bytes pass instead of reading the tree back
   * afterwards (guest/baseline.ts captureBaselineFromImport).
   */
  baseline?: boolean;
}

export type ImportResult = ResultOf<"archive.import">;

/** Stream a tar (plain or gzip) into the workspace at `dest` through the agent's safe import. */
export async function importTar(
  home: string,
  r: WorkspaceRecord,
  body: ReadableStream<Uint8Array>,
  dest = "/workspace",
  opts: ImportOptions = {},
): Promise<ImportResult> {
  const call = callWorkspace(
    home,
    r,
    { op: "archive.import", dest, ...(opts.baseline ? { baseline: true } : {}) },
    { input: body },
  );
  // With the baseline the call also does what `baseline.capture` did after it, which has no
  // wall-clock limit either: the supervisor's liveness deadlines still end it if the agent dies.
  if (opts.baseline) return call;
  return withTimeout(call, UPLOAD_TIMEOUT_MS, "the upload");
}

/** Stream a workspace path out as tar chunks, to whatever consumes them. */
export async function exportStream(
  home: string,
  r: WorkspaceRecord,
  path: string,
  sink: (chunk: Uint8Array) => Promise<void> | void,
): Promise<number> {
  let bytes = 0;
  const writes: Promise<void>[] = [];
  // A sink that fails (a full host disk) takes no more chunks; its error ends the export
  // once the stream is over (a throw inside the event callback would escape the call).
  let failed: { err: unknown } | null = null;
  const fail = (err: unknown) => {
    failed ??= { err };
  };
  await callWorkspace(
    home,
    r,
    { op: "archive.export", path },
    {
      onEvent: (e) => {
        if (failed || e.kind !== "data" || e.channel !== Channel.STDOUT) return;
        bytes += e.bytes.byteLength;
        try {
          const w = sink(e.bytes);
          if (w) writes.push(w.catch(fail));
        } catch (err) {
          fail(err);
        }
      },
    },
  );
  await Promise.all(writes);
  if (failed) throw (failed as { err: unknown }).err;
  return bytes;
}

/** A host write that failed (ENOSPC above all) as IO_ERROR naming the file. */
function hostWriteError(err: unknown, file: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (err instanceof PyroError || typeof code !== "string") return err;
  const why = code === "ENOSPC" || code === "EDQUOT" ? "no space left on the host's disk" : code;
  return new PyroError("IO_ERROR", `cannot write ${file}: ${why}`, {
    details: { path: file, errno: code },
    cause: err,
  });
}

/**
 * A host file written with plain synchronous writes, mode 0600: Bun's FileSink reports a failed
 * write (ENOSPC) later as an uncaught error that no caller can catch, which crashed the CLI and
 * left its temp file. A failed write is IO_ERROR naming `label` (the file the user knows).
 */
export function hostFileWriter(path: string, label = path): { write(c: Uint8Array): void; close(): void } {
  let fd: number | null = openSync(path, "w", 0o600);
  return {
    write(c) {
      try {
        for (let off = 0; off < c.byteLength; ) off += writeSync(fd as number, c, off);
      } catch (err) {
        throw hostWriteError(err, label);
      }
    },
    close() {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}

/** Save a workspace path as a tar file on the host (snapshots, baseline). Atomic. */
export async function exportToTarFile(
  home: string,
  r: WorkspaceRecord,
  path: string,
  file: string,
): Promise<number> {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const out = hostFileWriter(tmp, file);
  try {
    const bytes = await exportStream(home, r, path, (c) => out.write(c));
    out.close();
    renameSync(tmp, file);
    return bytes;
  } catch (err) {
    try {
      out.close();
    } catch {}
    rmSync(tmp, { force: true });
    throw hostWriteError(err, file);
  }
}

/**
 * `workspace export ID PATH --output HOST_PATH`: the file or directory at PATH becomes
 * HOST_PATH. The output must not exist (no silent overwrite) and its parent must.
 * Invariants: the archive is unpacked only inside a fresh 0700 staging directory made
 * beside the output (one left by an export killed midway is removed by the next export into
 * that directory); the output's directory is resolved once (realpath) and resolved again
 * right before the result is put in place — if it changed (a symlink swapped in) or the
 * guard (MCP: granted roots) refuses it, nothing is written; the result is placed with
 * no-replace semantics (link(2) for a file or symlink, mkdir(2) then rename(2) over that
 * empty directory for a directory), so an output that appears meanwhile is never replaced
 * and a symlink at the output is never followed.
 */
export async function exportToHost(
  home: string,
  r: WorkspaceRecord,
  path: string,
  output: string,
  opts: { guardWrite?: (realDir: string) => void } = {},
): Promise<{ output: string; artifact_type: "file" | "directory" | "symlink"; bytes: number }> {
  const out = resolve(output);
  const exists = () => {
    if (existsSync(out) || isDanglingLink(out))
      throw new PyroError("ALREADY_EXISTS", `${output} already exists; choose a new output path`);
  };
  exists();
  const parent = dirname(out);
  if (!existsSync(parent) || !statSync(parent).isDirectory())
    throw new PyroError("FILE_NOT_FOUND", `output directory ${parent} does not exist`);
  const realParent = realpathSync(parent);
  opts.guardWrite?.(realParent);
  const target = join(realParent, basename(out));
  sweepStaleStaging(realParent);
  const staging = mkdtempSync(join(realParent, `${STAGING_PREFIX}${process.pid}-`));
  try {
    // Chunks flow into the safe extractor as they arrive (bounded by the extractor's pace).
    const q = new AsyncQueue<Uint8Array>();
    const unpacking = unpackTar(q, staging);
    unpacking.catch(() => {});
    let bytes = 0;
    try {
      bytes = await exportStream(home, r, path, (c) => {
        fault("export.output");
        q.push(c);
      });
      q.end();
    } catch (err) {
      q.fail(err);
      throw err;
    }
    await unpacking;
    const entries = readdirSync(staging);
    // A file or directory export yields exactly one top entry; the workspace root yields its contents.
    let src: string;
    if (isWorkspaceRoot(path)) src = staging;
    else if (entries.length === 1) src = join(staging, entries[0] as string);
    else throw new PyroError("INTERNAL", `export of ${path} produced ${entries.length} top-level entries`);
    const st = lstatSync(src);
    const artifact_type = st.isSymbolicLink() ? "symlink" : st.isDirectory() ? "directory" : "file";
    if (realpathSync(parent) !== realParent)
      throw new PyroError(
        "IO_ERROR",
        `output directory ${parent} changed during the export; nothing written`,
      );
    opts.guardWrite?.(realParent);
    placeNoReplace(src, target, st.isDirectory(), exists);
    return { output: out, artifact_type, bytes };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** An export's staging directory beside its output: `.pyro-export-<pid>-XXXXXX`. */
const STAGING_PREFIX = ".pyro-export-";

/**
 * Remove the staging directories that exports killed midway left in `dir`: those whose pid
 * no longer runs (a live pid, even a reused one, keeps its directory: never a live export's).
 */
function sweepStaleStaging(dir: string): void {
  for (const n of readdirSync(dir)) {
    const m = n.startsWith(STAGING_PREFIX) ? /^(\d+)-/.exec(n.slice(STAGING_PREFIX.length)) : null;
    if (m && !pidAlive(Number(m[1]))) rmSync(join(dir, n), { recursive: true, force: true });
  }
}

/** Put `src` at `target` without ever replacing something that exists there (see exportToHost). */
function placeNoReplace(src: string, target: string, directory: boolean, exists: () => void): void {
  try {
    if (!directory) linkSync(src, target);
    else {
      mkdirSync(target, { mode: 0o700 });
      try {
        renameSync(src, target);
      } catch (err) {
        try {
          rmdirSync(target); // only the empty directory made above
        } catch {}
        throw err;
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") exists();
    throw err;
  }
}

function isWorkspaceRoot(p: string): boolean {
  const n = p.replace(/\/+$/, "");
  return n === "/workspace" || n === "" || n === "." || n === "/workspace/.";
}

function isDanglingLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

export function shortName(p: string): string {
  return basename(p);
}
