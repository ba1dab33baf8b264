/**
 * Crossing the host boundary: seeding/sync (host dir or tar → /workspace) and export
 * (/workspace path → host path). Both stream tar through the supervisor with bounded
 * buffers; export unpacks with the safe extractor into a staging dir beside the output and
 * renames it into place, so nothing is ever written outside the given host path.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { packTree } from "../protocol/archive/pack.ts";
import { unpackTar } from "../protocol/archive/unpack.ts";
import { PyroError } from "../protocol/errors.ts";
import { Channel } from "../protocol/frame.ts";
import { AsyncQueue } from "../protocol/queue.ts";
import { callWorkspace } from "./client.ts";
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
): Promise<{
  path: string;
  kind: SeedKind;
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
}> {
  const src = classifySource(hostPath);
  const body =
    src.kind === "directory"
      ? packTree(src.path, "")
      : (Bun.file(src.path).stream() as ReadableStream<Uint8Array>);
  const res = await withTimeout(
    callWorkspace(home, r, { op: "archive.import", dest }, { input: body }),
    UPLOAD_TIMEOUT_MS,
    "the upload",
  );
  return {
    path: String(res.path ?? dest),
    kind: src.kind,
    files: Number(res.files ?? 0),
    directories: Number(res.directories ?? 0),
    symlinks: Number(res.symlinks ?? 0),
    bytes: Number(res.bytes ?? 0),
  };
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
  await callWorkspace(
    home,
    r,
    { op: "archive.export", path },
    {
      onEvent: (e) => {
        if (e.kind === "data" && e.channel === Channel.STDOUT) {
          bytes += e.bytes.byteLength;
          const w = sink(e.bytes);
          if (w) writes.push(w);
        }
      },
    },
  );
  await Promise.all(writes);
  return bytes;
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
  const writer = Bun.file(tmp).writer();
  try {
    const bytes = await exportStream(home, r, path, (c) => {
      writer.write(c);
    });
    await writer.end();
    renameSync(tmp, file);
    return bytes;
  } catch (err) {
    try {
      await writer.end();
    } catch {}
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * `workspace export ID PATH --output HOST_PATH`: the file or directory at PATH becomes
 * HOST_PATH. The output must not exist (no silent overwrite) and its parent must.
 */
export async function exportToHost(
  home: string,
  r: WorkspaceRecord,
  path: string,
  output: string,
): Promise<{ output: string; artifact_type: "file" | "directory" | "symlink"; bytes: number }> {
  const out = resolve(output);
  if (existsSync(out) || isDanglingLink(out))
    throw new PyroError("ALREADY_EXISTS", `${output} already exists; choose a new output path`);
  const parent = dirname(out);
  if (!existsSync(parent) || !statSync(parent).isDirectory())
    throw new PyroError("FILE_NOT_FOUND", `output directory ${parent} does not exist`);
  const staging = join(parent, `.pyro-export-${process.pid}-${Date.now()}`);
  mkdirSync(staging, { mode: 0o700 });
  try {
    // Chunks flow into the safe extractor as they arrive (bounded by the extractor's pace).
    const q = new AsyncQueue<Uint8Array>();
    const unpacking = unpackTar(q, staging);
    unpacking.catch(() => {});
    let bytes = 0;
    try {
      bytes = await exportStream(home, r, path, (c) => q.push(c));
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
    renameSync(src, out);
    return { output: out, artifact_type, bytes };
  } finally {
    rmSync(staging, { recursive: true, force: true });
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
