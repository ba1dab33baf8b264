/**
 * `diff`: the workspace now against its baseline (baseline.ts), as a git-style unified patch
 * plus one summary entry per changed path.
 *
 * Output, per changed path, in git's order (byte order of the UTF-8 path):
 * - text files: `diff --git a/P b/P`, git's extended headers (`new file mode`, `deleted file
 *   mode`, `old mode`/`new mode`, `index OLD..NEW [MODE]` with full 40-hex ids), `---`/`+++`
 *   and hunks with 3 lines of context, so `git apply` and our patch.apply accept it;
 * - binary files (a NUL byte in the first 8 KiB, invalid UTF-8 anywhere — so the patch is
 *   always exact UTF-8 text — or over DIFF_TEXT_MAX_BYTES = 8 MiB): the headers plus git's
 *   `Binary files a/P and b/P differ` (git apply cannot replay those; the entry says binary);
 * - mode-only changes: the `old mode`/`new mode` headers alone;
 * - symlinks: git's form, the link target as a one-line text without a final newline;
 * - type changes (file ↔ symlink): a deletion followed by an addition, as git does.
 * Paths that need it are C-quoted like git's core.quotePath. Entries: `status` is added,
 * modified, deleted, type_changed or mode_changed (content and mode both changed →
 * modified, with old_mode/new_mode); additions/deletions count patch lines.
 *
 * Bounds: `patch` holds whole per-file sections up to max_bytes (default 8 MiB, at most
 * 64 MiB) and stops at the first section that does not fit (`truncated`); the `files` list
 * stops at DIFF_MAX_FILES entries or DIFF_FILES_BUDGET bytes of JSON (`files_truncated`);
 * `summary` always counts everything.
 *
 * Incremental: the walk lstat()s every path (no reads) and trusts, in order, the baseline's
 * git index (stat data of files as captured) and diff.ts's own cache (`<state>/diff-cache.idx`,
 * the same format: paths that differ from the baseline, with the stat data and blob id of
 * their current content). Only paths whose stat data matches neither, or is racy (see
 * baseline.ts), are read and hashed; the result says how many (`files_hashed`). Paths found unchanged after all get their index stat data
 * refreshed, like `git status` does. Rendered sections are kept in memory keyed by path and
 * both blob ids, so an unchanged workspace diffed twice reads no file the second time.
 */
import { rm } from "node:fs/promises";
import { structuredPatch } from "diff";
import { PyroError } from "../src/protocol/errors.ts";
import {
  BASELINE_GITDIR,
  blobOid,
  DIFF_CACHE_FILE,
  hashWorkspaceEntry,
  readBaselineBlob,
  readLinkBytes,
  readRegularFile,
  serialized,
  skipListFor,
  stateDirReal,
  walkTree,
  ZERO_OID,
} from "./baseline.ts";
import {
  comparePaths,
  forgetIndexMemo,
  type IndexEntry,
  type IndexFile,
  MODE_LINK,
  matchesStat,
  modeString,
  positionsOf,
  RACY_MARGIN_MS,
  readIndexFileMemo,
  sigOf,
  smudge,
  writeIndexFileMemo,
} from "./git-index.ts";
import { realRoot } from "./paths.ts";

export const DIFF_DEFAULT_MAX_BYTES = 8 * 1024 * 1024;
export const DIFF_MAX_BYTES = 64 * 1024 * 1024;
/** Larger files are reported as binary rather than diffed line by line. */
export const DIFF_TEXT_MAX_BYTES = 8 * 1024 * 1024;
export const DIFF_MAX_FILES = 5000;
/** JSON bytes the files list may take (the whole result must fit one protocol frame). */
export const DIFF_FILES_BUDGET = 768 * 1024;
/** Past this many edits a file gets one hunk spanning the changed region (still correct). */
const MAX_EDIT_LENGTH = 4000;
const CONTEXT = 3;
/** Bytes of rendered sections kept in memory across calls. */
const SECTION_CACHE_BYTES = 32 * 1024 * 1024;

export type DiffStatus = "added" | "modified" | "deleted" | "type_changed" | "mode_changed";

export interface DiffFile {
  path: string;
  status: DiffStatus;
  binary: boolean;
  old_mode?: string;
  new_mode?: string;
  additions: number;
  deletions: number;
}

export interface DiffResult {
  patch: string;
  files: DiffFile[];
  summary: { files_changed: number; additions: number; deletions: number; binary_files: number };
  /** the patch stops before the end (max_bytes) */
  truncated: boolean;
  /** the files list stops before the end (summary still counts all) */
  files_truncated: boolean;
  /** workspace files whose content had to be read this time */
  files_hashed: number;
}

export interface DiffOptions {
  maxBytes?: number;
  /** racy-entry margin (tests shorten it); default RACY_MARGIN_MS */
  racyMarginMs?: number;
}

type Side = { oid: string; mode: number; size: number };
type Change = { path: string; old?: Side; cur?: Side & { abs: string; content?: Uint8Array } };
type Section = { text: string; file: DiffFile };

// ---------------------------------------------------------------------------------------

export async function diffWorkspace(
  root: string,
  stateDir: string,
  opts: DiffOptions = {},
): Promise<DiffResult> {
  const maxBytes = opts.maxBytes ?? DIFF_DEFAULT_MAX_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0 || maxBytes > DIFF_MAX_BYTES) {
    throw new PyroError("INVALID_INPUT", `max_bytes must be an integer from 0 to ${DIFF_MAX_BYTES}`);
  }
  const margin = opts.racyMarginMs ?? RACY_MARGIN_MS;
  // No baseline captured means the workspace started empty (create skips the capture then):
  // diff against an empty tree.
  const stateReal = stateDirReal(stateDir, true) as string;
  return serialized(`state:${stateReal}`, async () => {
    const rootReal = await realRoot(root);
    const gitdir = `${stateReal}/${BASELINE_GITDIR}`;
    const indexPath = `${gitdir}/index`;
    const cachePath = `${stateReal}/${DIFF_CACHE_FILE}`;
    const idx: IndexFile = (await readIndexFileMemo(indexPath, "baseline index")) ?? {
      entries: [],
      refMs: 0,
    };
    let cache: IndexFile = { entries: [], refMs: 0 };
    try {
      cache = (await readIndexFileMemo(cachePath, "diff cache")) ?? cache;
    } catch {
      await rm(cachePath, { force: true }); // a damaged cache only makes this diff slower
    }
    try {
      return await scan(rootReal, stateReal, gitdir, idx, cache, indexPath, cachePath, maxBytes, margin);
    } catch (err) {
      forgetIndexMemo(indexPath); // entries may have been changed in memory only
      forgetIndexMemo(cachePath);
      throw err;
    }
  });
}

async function scan(
  rootReal: string,
  stateReal: string,
  gitdir: string,
  idx: IndexFile,
  cache: IndexFile,
  indexPath: string,
  cachePath: string,
  maxBytes: number,
  margin: number,
): Promise<DiffResult> {
  const basePos = positionsOf(idx);
  const cached = positionsOf(cache);
  const seen = new Uint8Array(idx.entries.length);
  const idxRacy = idx.refMs - margin;
  const cacheRacy = cache.refMs - margin;
  const scanStart = Date.now();
  const changes: Change[] = [];
  const newCache: IndexEntry[] = [];
  let cacheDirty = false;
  let idxDirty = false;
  let hashed = 0;

  await walkTree(rootReal, skipListFor(rootReal, stateReal), async (path, abs, st, mode) => {
    const pos = basePos.get(path);
    const base = pos === undefined ? undefined : idx.entries[pos]!;
    if (pos !== undefined) seen[pos] = 1;
    // the common case first: untouched since the baseline's stat data was taken (the stat
    // data being equal, the recorded times are the current ones)
    if (base && base.mode === mode && matchesStat(base, st) && st.mtimeMs < idxRacy && st.ctimeMs < idxRacy)
      return;
    const cpos = cached.get(path);
    const c = cpos === undefined ? undefined : cache.entries[cpos]!;
    let oid: string;
    let content: Uint8Array | undefined;
    if (c && c.mode === mode && matchesStat(c, st) && st.mtimeMs < cacheRacy && st.ctimeMs < cacheRacy) {
      oid = c.oid;
    } else {
      try {
        ({ oid, content } = await hashWorkspaceEntry(abs, st, `/workspace/${path}`));
      } catch (err) {
        if (err instanceof PyroError && err.code === "FILE_NOT_FOUND") return; // vanished meanwhile
        throw err;
      }
      hashed++;
      if (base && base.oid === oid && base.mode === mode) {
        Object.assign(base, sigOf(st)); // refresh: unchanged after all
        idxDirty = true;
      } else if (base && matchesStat(base, st)) {
        smudge(base); // changed within the racy window: never trust this stat data again
        idxDirty = true;
      }
      if (!base || base.oid !== oid || base.mode !== mode) cacheDirty = true;
    }
    if (base && base.oid === oid && base.mode === mode) return;
    if (!c || c.oid !== oid || c.mode !== mode || !matchesStat(c, st)) cacheDirty = true;
    newCache.push({ path, mode, oid, ...sigOf(st) });
    changes.push({
      path,
      old: base && { oid: base.oid, mode: base.mode, size: base.size },
      cur: { oid, mode, size: st.size, abs, content },
    });
  });
  for (let i = 0; i < idx.entries.length; i++) {
    if (seen[i]) continue;
    const base = idx.entries[i]!;
    changes.push({ path: base.path, old: { oid: base.oid, mode: base.mode, size: base.size } });
  }
  if (newCache.length !== cache.entries.length) cacheDirty = true;

  if (idxDirty) writeIndexFileMemo(indexPath, idx.entries, scanStart);
  if (cacheDirty) {
    newCache.sort((a, b) => comparePaths(a.path, b.path));
    writeIndexFileMemo(cachePath, newCache, scanStart);
  }

  changes.sort((a, b) => comparePaths(a.path, b.path));
  const { reads, ...out } = await render(gitdir, changes, maxBytes);
  return { ...out, files_hashed: hashed + reads };
}

// ---------------------------------------------------------------------------------------
// Rendering

const sectionCache = new Map<string, Section & { bytes: number }>();
let sectionCacheBytes = 0;

function cacheGet(key: string): Section | undefined {
  const hit = sectionCache.get(key);
  if (!hit) return undefined;
  sectionCache.delete(key); // most recently used goes last
  sectionCache.set(key, hit);
  return { text: hit.text, file: { ...hit.file } };
}

function cachePut(key: string, s: Section): void {
  const bytes = s.text.length * 2 + key.length * 2 + 200;
  if (bytes > SECTION_CACHE_BYTES / 4) return;
  const old = sectionCache.get(key);
  if (old) {
    sectionCache.delete(key);
    sectionCacheBytes -= old.bytes;
  }
  sectionCache.set(key, { ...s, file: { ...s.file }, bytes });
  sectionCacheBytes += bytes;
  for (const [k, v] of sectionCache) {
    if (sectionCacheBytes <= SECTION_CACHE_BYTES) break;
    sectionCache.delete(k);
    sectionCacheBytes -= v.bytes;
  }
}

const textEncoder = new TextEncoder();

function sectionKey(ch: Change): string {
  return `${ch.path}\0${ch.old?.oid ?? ""}\0${ch.old?.mode ?? ""}\0${ch.cur?.oid ?? ""}\0${ch.cur?.mode ?? ""}`;
}

async function render(
  gitdir: string,
  changes: Change[],
  maxBytes: number,
): Promise<Omit<DiffResult, "files_hashed"> & { reads: number }> {
  let reads = 0;
  const parts: string[] = [];
  let patchBytes = 0;
  let truncated = false;
  const files: DiffFile[] = [];
  let filesBytes = 0;
  let filesTruncated = false;
  const summary = { files_changed: 0, additions: 0, deletions: 0, binary_files: 0 };

  for (const ch of changes) {
    let section = cacheGet(sectionKey(ch));
    if (!section) {
      const oldContent = ch.old ? await loadOld(gitdir, ch.old) : undefined;
      let newContent: Uint8Array | undefined;
      if (ch.cur) {
        newContent = ch.cur.content;
        if (!newContent && (ch.cur.mode === MODE_LINK || ch.cur.size <= DIFF_TEXT_MAX_BYTES)) {
          const shown = `/workspace/${ch.path}`;
          try {
            newContent =
              ch.cur.mode === MODE_LINK
                ? readLinkBytes(ch.cur.abs, shown)
                : readRegularFile(ch.cur.abs, shown);
          } catch (err) {
            if (!(err instanceof PyroError && err.code === "FILE_NOT_FOUND")) throw err;
            // vanished since the walk: now a deletion, or nothing at all
            if (!ch.old) continue;
            ch.cur = undefined;
          }
          reads++;
          // it may have changed since the walk: describe what was read
          if (ch.cur && newContent) ch.cur.oid = blobOid(newContent);
        }
      }
      const made = renderChange(ch, oldContent, newContent);
      if (!made) continue; // changed back between the walk and now
      section = made;
      cachePut(sectionKey(ch), section); // ch.cur.oid is now that of what was rendered
    }
    const f = section.file;
    summary.files_changed++;
    summary.additions += f.additions;
    summary.deletions += f.deletions;
    if (f.binary) summary.binary_files++;
    if (!filesTruncated) {
      const size = JSON.stringify(f).length + 1;
      if (files.length >= DIFF_MAX_FILES || filesBytes + size > DIFF_FILES_BUDGET) filesTruncated = true;
      else {
        files.push(f);
        filesBytes += size;
      }
    }
    if (!truncated) {
      const size = textEncoder.encode(section.text).length;
      if (patchBytes + size > maxBytes) truncated = true;
      else {
        parts.push(section.text);
        patchBytes += size;
      }
    }
  }
  return { patch: parts.join(""), files, summary, truncated, files_truncated: filesTruncated, reads };
}

async function loadOld(gitdir: string, old: Side): Promise<Uint8Array | undefined> {
  // the index records the size the file had at capture, which is the blob's size
  if (old.mode !== MODE_LINK && old.size > DIFF_TEXT_MAX_BYTES) return undefined;
  return readBaselineBlob(gitdir, old.oid);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Text (as a string) or undefined for binary content. */
function asText(bytes: Uint8Array | undefined): string | undefined {
  if (!bytes || bytes.byteLength > DIFF_TEXT_MAX_BYTES) return undefined;
  if (bytes.subarray(0, 8192).includes(0)) return undefined;
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

const NEEDS_QUOTE = /[\x00-\x1f\x7f"\\\u0080-\uffff]/;
const ESCAPES: Record<string, string> = {
  "\x07": "\\a",
  "\b": "\\b",
  "\t": "\\t",
  "\n": "\\n",
  "\v": "\\v",
  "\f": "\\f",
  "\r": "\\r",
  '"': '\\"',
  "\\": "\\\\",
};

/** A path as git prints it in headers (C-quoted with octal bytes when needed). */
export function quoteGitPath(name: string): string {
  if (!NEEDS_QUOTE.test(name)) return name;
  let out = '"';
  for (const byte of textEncoder.encode(name)) {
    const ch = String.fromCharCode(byte);
    if (ESCAPES[ch]) out += ESCAPES[ch];
    else if (byte < 0x20 || byte >= 0x7f) out += `\\${byte.toString(8).padStart(3, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/** `--- NAME` / `+++ NAME`: git adds a tab after names containing a space. */
function fileLine(prefix: string, name: string): string {
  const q = quoteGitPath(name);
  return `${prefix} ${q}${q === name && name.includes(" ") ? "\t" : ""}\n`;
}

function range(start: number, count: number): string {
  return count === 1 ? `${start}` : `${start},${count}`;
}

/** Hunks (with their @@ lines) for two texts, and the counts. */
function hunksFor(a: string, b: string): { text: string; additions: number; deletions: number } {
  const p =
    structuredPatch("", "", a, b, undefined, undefined, {
      context: CONTEXT,
      maxEditLength: MAX_EDIT_LENGTH,
    }) ?? singleHunkPatch(a, b);
  let text = "";
  let additions = 0;
  let deletions = 0;
  for (const h of p.hunks) {
    const oldStart = h.oldLines === 0 ? h.oldStart - 1 : h.oldStart;
    const newStart = h.newLines === 0 ? h.newStart - 1 : h.newStart;
    text += `@@ -${range(oldStart, h.oldLines)} +${range(newStart, h.newLines)} @@\n`;
    for (const line of h.lines) {
      if (line[0] === "+") additions++;
      else if (line[0] === "-") deletions++;
      text += `${line}\n`;
    }
  }
  return { text, additions, deletions };
}

/** Lines with their terminators (the last may have none). */
function splitLines(s: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (;;) {
    const nl = s.indexOf("\n", start);
    if (nl < 0) break;
    out.push(s.slice(start, nl + 1));
    start = nl + 1;
  }
  if (start < s.length) out.push(s.slice(start));
  return out;
}

/**
 * One hunk replacing everything between the common head and tail (with context), for pairs
 * too different for an edit script within MAX_EDIT_LENGTH. Same shape as jsdiff's result.
 */
function singleHunkPatch(
  a: string,
  b: string,
): { hunks: { oldStart: number; oldLines: number; newStart: number; newLines: number; lines: string[] }[] } {
  const A = splitLines(a);
  const B = splitLines(b);
  let head = 0;
  while (head < A.length && head < B.length && A[head] === B[head]) head++;
  let tail = 0;
  while (
    tail < A.length - head &&
    tail < B.length - head &&
    A[A.length - 1 - tail] === B[B.length - 1 - tail]
  )
    tail++;
  const ctxStart = Math.max(0, head - CONTEXT);
  const trailing = Math.min(tail, CONTEXT);
  const lines: string[] = [];
  const push = (mark: string, line: string) => {
    if (line.endsWith("\n")) lines.push(mark + line.slice(0, -1));
    else lines.push(mark + line, "\\ No newline at end of file");
  };
  for (let i = ctxStart; i < head; i++) push(" ", A[i]!);
  for (let i = head; i < A.length - tail; i++) push("-", A[i]!);
  for (let i = head; i < B.length - tail; i++) push("+", B[i]!);
  for (let i = A.length - tail; i < A.length - tail + trailing; i++) push(" ", A[i]!);
  const leading = head - ctxStart;
  return {
    hunks: [
      {
        // 1-based like jsdiff's (hunksFor turns an empty side's start into git's form)
        oldStart: ctxStart + 1,
        oldLines: leading + (A.length - tail - head) + trailing,
        newStart: ctxStart + 1,
        newLines: leading + (B.length - tail - head) + trailing,
        lines,
      },
    ],
  };
}

/** The section for one change, or null when old and new turn out the same after all. */
function renderChange(
  ch: Change,
  oldBytes: Uint8Array | undefined,
  newBytes: Uint8Array | undefined,
): Section | null {
  const { path, old, cur } = ch;
  const a = quoteGitPath(`a/${path}`);
  const b = quoteGitPath(`b/${path}`);
  const gitLine = `diff --git ${a} ${b}\n`;

  const addOrDelete = (side: "add" | "delete", s: Side, bytes: Uint8Array | undefined) => {
    const text = s.mode === MODE_LINK ? new TextDecoder().decode(bytes) : asText(bytes);
    let out = gitLine;
    out +=
      side === "add"
        ? `new file mode ${modeString(s.mode)}\nindex ${ZERO_OID}..${s.oid}\n`
        : `deleted file mode ${modeString(s.mode)}\nindex ${s.oid}..${ZERO_OID}\n`;
    if (text === undefined) {
      out +=
        side === "add"
          ? `Binary files /dev/null and ${b} differ\n`
          : `Binary files ${a} and /dev/null differ\n`;
      return { text: out, additions: 0, deletions: 0, binary: true };
    }
    if (text === "") return { text: out, additions: 0, deletions: 0, binary: false };
    const h = side === "add" ? hunksFor("", text) : hunksFor(text, "");
    out +=
      side === "add"
        ? fileLine("---", "/dev/null") + fileLine("+++", `b/${path}`)
        : fileLine("---", `a/${path}`) + fileLine("+++", "/dev/null");
    return { text: out + h.text, additions: h.additions, deletions: h.deletions, binary: false };
  };

  if (!old && cur) {
    const r = addOrDelete("add", cur, newBytes);
    return {
      text: r.text,
      file: {
        path,
        status: "added",
        binary: r.binary,
        new_mode: modeString(cur.mode),
        additions: r.additions,
        deletions: 0,
      },
    };
  }
  if (old && !cur) {
    const r = addOrDelete("delete", old, oldBytes);
    return {
      text: r.text,
      file: {
        path,
        status: "deleted",
        binary: r.binary,
        old_mode: modeString(old.mode),
        additions: 0,
        deletions: r.deletions,
      },
    };
  }
  const o = old!;
  const n = cur!;
  const oldMode = modeString(o.mode);
  const newMode = modeString(n.mode);
  if ((o.mode === MODE_LINK) !== (n.mode === MODE_LINK)) {
    const d = addOrDelete("delete", o, oldBytes);
    const ad = addOrDelete("add", n, newBytes);
    return {
      text: d.text + ad.text,
      file: {
        path,
        status: "type_changed",
        binary: d.binary || ad.binary,
        old_mode: oldMode,
        new_mode: newMode,
        additions: ad.additions,
        deletions: d.deletions,
      },
    };
  }
  if (o.oid === n.oid && o.mode === n.mode) return null; // changed back since the walk
  let out = gitLine;
  if (o.mode !== n.mode) out += `old mode ${oldMode}\nnew mode ${newMode}\n`;
  if (o.oid === n.oid) {
    return {
      text: out,
      file: {
        path,
        status: "mode_changed",
        binary: false,
        old_mode: oldMode,
        new_mode: newMode,
        additions: 0,
        deletions: 0,
      },
    };
  }
  out += `index ${o.oid}..${n.oid}${o.mode === n.mode ? ` ${newMode}` : ""}\n`;
  const link = n.mode === MODE_LINK;
  const ta = link ? new TextDecoder().decode(oldBytes) : asText(oldBytes);
  const tb = link ? new TextDecoder().decode(newBytes) : asText(newBytes);
  const file: DiffFile = {
    path,
    status: "modified",
    binary: false,
    old_mode: oldMode,
    new_mode: newMode,
    additions: 0,
    deletions: 0,
  };
  if (ta === undefined || tb === undefined) {
    file.binary = true;
    return { text: `${out}Binary files ${a} and ${b} differ\n`, file };
  }
  const h = hunksFor(ta, tb);
  file.additions = h.additions;
  file.deletions = h.deletions;
  return { text: out + fileLine("---", `a/${path}`) + fileLine("+++", `b/${path}`) + h.text, file };
}

/** Only for tests: forget rendered sections. */
export function clearSectionCache(): void {
  sectionCache.clear();
  sectionCacheBytes = 0;
}
