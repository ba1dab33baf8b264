/**
 * `patch.apply`: a unified diff (as `git diff` or `diff -u` write it) applied to the
 * workspace, checked completely before anything is written and applied all-or-nothing.
 *
 * Input: any number of file sections. Traditional sections (`--- OLD` / `+++ NEW`, a tab and
 * timestamp after a name are ignored) and git sections (`diff --git a/X b/Y` with `new file
 * mode`, `deleted file mode`, `old mode`/`new mode`, `rename from/to`, `copy from/to`,
 * `similarity index`, `index` headers). `a/` is stripped from old names and `b/` from new
 * ones; `/dev/null` marks an added or deleted file; C-quoted names (`"a/t\303\251st"`) are
 * understood. Hunks keep their bytes exactly: CRLF content stays CRLF, `\ No newline at end
 * of file` is honoured, and file contents are handled as bytes (they need not be UTF-8).
 * Text around sections (commit messages, `Index:` lines) is skipped. Modes: 100755 sets the
 * executable bits, 100644 clears them, 120000 makes a symlink (its target is the text).
 *
 * Names are relative to /workspace (`/workspace/x` is accepted) and resolved like every file
 * operation (paths.ts): `..` past the root, other absolute paths and symlinks leading outside
 * are PATH_OUTSIDE_WORKSPACE. A symlink as the final component is patched as a link (mode
 * 120000 sections) and refused as a regular file, like git apply does.
 *
 * Checking (nothing is written until every check passed; any failure is PATCH_REJECTED
 * naming the file and, for hunks, the hunk number and the line it was meant for):
 * - sections apply in order to a virtual view of the files, so a patch may touch a file more
 *   than once (e.g. git's deletion + addition for a type change);
 * - every hunk must match the current content exactly (fuzz 0). Like patch(1) it may be
 *   found up to MAX_OFFSET_LINES lines away from its stated line, after the offset of the
 *   hunk before it; hunks apply in order and do not overlap; a hunk whose leading context is
 *   shorter than its trailing context must match at the start of the file, and one with
 *   shorter trailing context at the end; a hunk without any context is used only at its
 *   stated line;
 * - added files must not exist; deleted files must exist and be empty once their hunks are
 *   applied (a binary deletion is accepted when the `index` line's old id matches the file);
 * - binary patches with data (`GIT binary patch`) or without (`Binary files ... differ`) are
 *   otherwise refused, and so is a file replaced by a directory of the same name (or back).
 *
 * Writing: each new content goes to a temp file beside its target (parent directories are
 * created as needed) and each existing target is hard-linked to a backup beside it; then
 * every temp file is renamed over its target and every deleted file unlinked. If one of
 * those steps fails, the ones done are undone from the backups (best effort: a second
 * failure while restoring is reported in the error's details), the temp files and created
 * directories are removed, and the error is returned. Directories emptied by deletions or
 * renames are removed, as git apply does. Another process writing the same files at the same
 * moment can still race with us between check and rename.
 *
 * Bounds: the patch text is at most PATCH_MAX_BYTES (8 MiB); every file it touches, before
 * and after, at most PATCH_FILE_MAX_BYTES (16 MiB) — both FILE_TOO_LARGE. The result lists
 * the files changed (renames once, under their new name) up to ~768 KiB of JSON
 * (`files_truncated` past that).
 */
import { constants as C, type Stats } from "node:fs";
import {
  chmod,
  chown,
  copyFile,
  link,
  lstat,
  mkdir,
  open,
  readlink,
  rename,
  rmdir,
  symlink,
  unlink,
} from "node:fs/promises";
import { fsError, tempName, writeAll } from "../src/protocol/archive/index.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { serialized } from "./baseline.ts";
import { realRoot, resolveInRoot, userPathParts } from "./paths.ts";

export const PATCH_MAX_BYTES = 8 * 1024 * 1024;
export const PATCH_FILE_MAX_BYTES = 16 * 1024 * 1024;
/** How far (in lines) a hunk is looked for around its stated position. */
export const MAX_OFFSET_LINES = 1000;

/** Tests only: make the rename (or unlink) of this path fail during the commit. */
export const testHooks: { failRenameOf?: string } = {};

export type PatchFileStatus = "added" | "modified" | "deleted" | "renamed";

/** JSON bytes the files list may take in a result (it must fit one protocol frame). */
const RESULT_FILES_BUDGET = 768 * 1024;

export interface PatchResult {
  files: { path: string; status: PatchFileStatus; from?: string }[];
  hunks_applied: number;
  /** the files list stops early (huge patches); the patch was applied whole all the same */
  files_truncated: boolean;
}

// ---------------------------------------------------------------------------------------
// Parsing. The patch is a "byte string": one char per byte (latin1), so file bytes are kept
// exactly whatever their encoding.

export interface Hunk {
  oldStart: number;
  oldCount: number;
  newStart: number;
  newCount: number;
  oldLines: string[];
  newLines: string[];
  leading: number;
  trailing: number;
}

export interface FilePatch {
  /** 1-based line of the patch where the section starts */
  line: number;
  git: boolean;
  /** names with a/ and b/ stripped, as byte strings; null for /dev/null */
  oldName: string | null;
  newName: string | null;
  isNew: boolean;
  isDelete: boolean;
  isRename: boolean;
  isCopy: boolean;
  oldMode?: number;
  newMode?: number;
  oldOid?: string;
  newOid?: string;
  binary: false | "data" | "no-data";
  hunks: Hunk[];
}

function rejected(message: string, details: Record<string, unknown> = {}): PyroError {
  return new PyroError("PATCH_REJECTED", message, { details });
}

function malformed(line: number, why: string): PyroError {
  return rejected(`malformed patch at line ${line}: ${why}`, { line });
}

const ESC: Record<string, string> = {
  a: "\x07",
  b: "\b",
  t: "\t",
  n: "\n",
  v: "\v",
  f: "\f",
  r: "\r",
  '"': '"',
  "\\": "\\",
};

/** A C-quoted name starting at s[0] === '"': the unquoted bytes and what follows. */
function unquote(s: string, line: number): { name: string; rest: string } {
  let out = "";
  let i = 1;
  while (i < s.length) {
    const ch = s[i]!;
    if (ch === '"') return { name: out, rest: s.slice(i + 1) };
    if (ch === "\\") {
      const next = s[i + 1] ?? "";
      if (/[0-7]/.test(next)) {
        const oct = /^[0-7]{1,3}/.exec(s.slice(i + 1))![0];
        out += String.fromCharCode(Number.parseInt(oct, 8) & 0xff);
        i += 1 + oct.length;
        continue;
      }
      if (!(next in ESC)) throw malformed(line, `bad escape \\${next} in a quoted name`);
      out += ESC[next];
      i += 2;
      continue;
    }
    out += ch;
    i++;
  }
  throw malformed(line, "unterminated quoted name");
}

function stripCR(s: string): string {
  return s.endsWith("\r") ? s.slice(0, -1) : s;
}

/** Name in a `---`/`+++` line: quoted, or up to a tab (a timestamp may follow). */
function headerName(s: string, line: number): string | null {
  return headerField(s, line).name;
}

/**
 * Name and whether the timestamp after it is the epoch (diff -N marks a file that does not
 * exist on one side that way instead of /dev/null).
 */
function headerField(s: string, line: number): { name: string | null; epoch: boolean } {
  let name: string;
  let rest: string;
  if (s.startsWith('"')) ({ name, rest } = unquote(s, line));
  else {
    const tab = s.indexOf("\t");
    name = tab >= 0 ? s.slice(0, tab) : s.replace(/[ ]+$/, "");
    rest = tab >= 0 ? s.slice(tab) : "";
  }
  return { name: name === "/dev/null" ? null : name, epoch: isEpoch(rest.trim()) };
}

function isEpoch(stamp: string): boolean {
  const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.\d+)? ([+-])(\d\d)(\d\d)$/.exec(stamp);
  if (!m) return false;
  const local = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  const offset = (m[7] === "-" ? -1 : 1) * (+m[8]! * 60 + +m[9]!) * 60_000;
  return local - offset === 0;
}

/** The two names of a `diff --git` line (still prefixed), or null when ambiguous. */
function gitHeaderNames(s: string, line: number): [string, string] | null {
  if (s.startsWith('"')) {
    const a = unquote(s, line);
    const rest = a.rest.replace(/^ +/, "");
    const b = rest.startsWith('"') ? unquote(rest, line).name : rest;
    return [a.name, b];
  }
  const q = s.indexOf(' "');
  if (q >= 0) return [s.slice(0, q), unquote(s.slice(q + 1), line).name];
  // unquoted: the split where both names are the same once their prefix is dropped
  for (let i = s.indexOf(" "); i >= 0; i = s.indexOf(" ", i + 1)) {
    const a = s.slice(0, i);
    const b = s.slice(i + 1);
    const sa = a.indexOf("/");
    const sb = b.indexOf("/");
    if (sa >= 0 && sb >= 0 && a.slice(sa + 1) === b.slice(sb + 1)) return [a, b];
  }
  return null;
}

function stripPrefix(name: string | null, prefix: "a/" | "b/"): string | null {
  if (name === null) return null;
  return name.startsWith(prefix) ? name.slice(2) : name;
}

function gitMode(s: string, line: number): number {
  const m = /^([0-7]{6})\s*$/.exec(s);
  if (!m) throw malformed(line, `bad mode "${s}"`);
  return Number.parseInt(m[1]!, 8);
}

export function parsePatch(text: string): FilePatch[] {
  const lines = text.split("\n");
  const endsWithNewline = text.endsWith("\n");
  if (endsWithNewline) lines.pop();
  const n = lines.length;
  const nl = (i: number) => (i < n - 1 || endsWithNewline ? "\n" : "");
  const out: FilePatch[] = [];
  let i = 0;

  const parseHunks = (fp: FilePatch) => {
    while (i < n && lines[i]!.startsWith("@@ ")) {
      const at = i + 1;
      const m = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(stripCR(lines[i]!));
      if (!m) throw malformed(at, "bad hunk header");
      const h: Hunk = {
        oldStart: Number(m[1]),
        oldCount: m[2] === undefined ? 1 : Number(m[2]),
        newStart: Number(m[3]),
        newCount: m[4] === undefined ? 1 : Number(m[4]),
        oldLines: [],
        newLines: [],
        leading: 0,
        trailing: 0,
      };
      i++;
      let oldSeen = 0;
      let newSeen = 0;
      let last = "";
      let changed = false;
      const marker = () => {
        // "\ No newline at end of file": the line before has no newline
        const cut = (arr: string[]) => {
          const v = arr[arr.length - 1];
          if (v?.endsWith("\n")) arr[arr.length - 1] = v.slice(0, -1);
        };
        if (last === "") throw malformed(i + 1, '"\\" line without a line before it');
        if (last === " " || last === "-") cut(h.oldLines);
        if (last === " " || last === "+") cut(h.newLines);
      };
      while (oldSeen < h.oldCount || newSeen < h.newCount) {
        if (i >= n) throw malformed(at, "hunk ends early");
        const l = lines[i]!;
        // a line that is empty (or only CR) is an empty context line whose space got lost
        const bare = l === "" || l === "\r";
        const kind = bare ? " " : l[0]!;
        const body = bare ? l + nl(i) : l.slice(1) + nl(i);
        if (kind === "\\") {
          marker();
          i++;
          continue;
        }
        if (kind === " ") {
          if (oldSeen >= h.oldCount || newSeen >= h.newCount)
            throw malformed(i + 1, "hunk has more lines than its header says");
          h.oldLines.push(body);
          h.newLines.push(body);
          oldSeen++;
          newSeen++;
          if (changed) h.trailing++;
          else h.leading++;
        } else if (kind === "-") {
          if (oldSeen >= h.oldCount) throw malformed(i + 1, "hunk has more lines than its header says");
          h.oldLines.push(body);
          oldSeen++;
          changed = true;
          h.trailing = 0;
        } else if (kind === "+") {
          if (newSeen >= h.newCount) throw malformed(i + 1, "hunk has more lines than its header says");
          h.newLines.push(body);
          newSeen++;
          changed = true;
          h.trailing = 0;
        } else {
          throw malformed(i + 1, "unexpected line inside a hunk");
        }
        last = kind;
        i++;
      }
      if (i < n && lines[i]!.startsWith("\\")) {
        marker();
        i++;
      }
      // a change or context line right after the counted ones: the header's counts are off
      if (i < n) {
        const l = stripCR(lines[i]!);
        const header = l.startsWith("--- ") && lines[i + 1]?.startsWith("+++ ");
        const extra =
          (l.startsWith("+") && !l.startsWith("+++ ")) ||
          (l.startsWith("-") && l !== "-- " && l !== "--" && !header) ||
          l.startsWith(" ");
        if (extra) throw malformed(i + 1, "hunk has more lines than its header says");
      }
      if (!changed) h.trailing = h.leading; // context only: no anchoring
      fp.hunks.push(h);
    }
  };

  while (i < n) {
    const line = lines[i]!;
    if (line.startsWith("diff --git ")) {
      const at = i + 1;
      const names = gitHeaderNames(stripCR(line.slice(11)), at);
      const fp: FilePatch = {
        line: at,
        git: true,
        oldName: null,
        newName: null,
        isNew: false,
        isDelete: false,
        isRename: false,
        isCopy: false,
        binary: false,
        hunks: [],
      };
      let from: string | undefined;
      let to: string | undefined;
      i++;
      for (; i < n; i++) {
        const l = stripCR(lines[i]!);
        const val = (prefix: string) => {
          const v = l.slice(prefix.length);
          return v.startsWith('"') ? unquote(v, i + 1).name : v;
        };
        if (l.startsWith("old mode ")) fp.oldMode = gitMode(l.slice(9), i + 1);
        else if (l.startsWith("new mode ")) fp.newMode = gitMode(l.slice(9), i + 1);
        else if (l.startsWith("deleted file mode ")) {
          fp.isDelete = true;
          fp.oldMode = gitMode(l.slice(18), i + 1);
        } else if (l.startsWith("new file mode ")) {
          fp.isNew = true;
          fp.newMode = gitMode(l.slice(14), i + 1);
        } else if (l.startsWith("rename from ")) {
          fp.isRename = true;
          from = val("rename from ");
        } else if (l.startsWith("rename old ")) {
          fp.isRename = true;
          from = val("rename old ");
        } else if (l.startsWith("rename to ")) {
          fp.isRename = true;
          to = val("rename to ");
        } else if (l.startsWith("rename new ")) {
          fp.isRename = true;
          to = val("rename new ");
        } else if (l.startsWith("copy from ")) {
          fp.isCopy = true;
          from = val("copy from ");
        } else if (l.startsWith("copy to ")) {
          fp.isCopy = true;
          to = val("copy to ");
        } else if (l.startsWith("similarity index ") || l.startsWith("dissimilarity index ")) {
          // informational
        } else if (l.startsWith("index ")) {
          const m = /^index ([0-9a-f]+)\.\.([0-9a-f]+)(?: ([0-7]{6}))?$/.exec(l);
          if (!m) throw malformed(i + 1, "bad index line");
          fp.oldOid = m[1];
          fp.newOid = m[2];
          if (m[3]) {
            const mode = Number.parseInt(m[3], 8);
            fp.oldMode ??= mode;
            fp.newMode ??= mode;
          }
        } else break;
      }
      let minus: string | null | undefined;
      let plus: string | null | undefined;
      if (i + 1 < n && lines[i]!.startsWith("--- ") && lines[i + 1]!.startsWith("+++ ")) {
        minus = headerName(stripCR(lines[i]!.slice(4)), i + 1);
        plus = headerName(stripCR(lines[i + 1]!.slice(4)), i + 2);
        i += 2;
        parseHunks(fp);
      } else if (i < n && /^Binary files .* differ\r?$/.test(lines[i]!)) {
        fp.binary = "no-data";
        i++;
      } else if (i < n && stripCR(lines[i]!) === "GIT binary patch") {
        fp.binary = "data";
        i++;
        // literal/delta blocks, each ended by an empty line
        while (i < n && /^(literal|delta) \d+\r?$/.test(lines[i]!)) {
          i++;
          while (i < n && stripCR(lines[i]!) !== "") i++;
          i++;
        }
      }
      const [ha, hb] = names ?? [undefined, undefined];
      const oldName =
        from ??
        (minus !== undefined
          ? stripPrefix(minus, "a/")
          : ha !== undefined
            ? stripPrefix(ha, "a/")
            : undefined);
      const newName =
        to ??
        (plus !== undefined ? stripPrefix(plus, "b/") : hb !== undefined ? stripPrefix(hb, "b/") : undefined);
      if (oldName === undefined || newName === undefined)
        throw malformed(at, "cannot tell the file names of this section");
      fp.oldName = fp.isNew ? null : oldName;
      fp.newName = fp.isDelete ? null : newName;
      if (fp.oldName === null && fp.newName !== null) fp.isNew = true;
      if (fp.newName === null && fp.oldName !== null) fp.isDelete = true;
      if (fp.oldName === null && fp.newName === null)
        throw malformed(at, "a section with neither an old nor a new file");
      out.push(fp);
      continue;
    }
    if (line.startsWith("--- ") && i + 1 < n && lines[i + 1]!.startsWith("+++ ")) {
      const at = i + 1;
      const minus = headerField(stripCR(line.slice(4)), at);
      const plus = headerField(stripCR(lines[i + 1]!.slice(4)), at + 1);
      const oldName = stripPrefix(minus.name, "a/");
      const newName = stripPrefix(plus.name, "b/");
      if (oldName === null && newName === null)
        throw malformed(at, "a section with neither an old nor a new file");
      const fp: FilePatch = {
        line: at,
        git: false,
        oldName,
        newName,
        isNew: oldName === null,
        isDelete: newName === null,
        isRename: false,
        isCopy: false,
        binary: false,
        hunks: [],
      };
      i += 2;
      parseHunks(fp);
      if (fp.hunks.length === 0) throw malformed(at, "a file header without hunks");
      // diff -N: a side stamped with the epoch does not exist
      const only = fp.hunks.length === 1 ? fp.hunks[0]! : undefined;
      if (minus.epoch && newName !== null && only?.oldStart === 0 && only.oldCount === 0) {
        fp.oldName = null;
        fp.isNew = true;
      } else if (plus.epoch && oldName !== null && only?.newStart === 0 && only.newCount === 0) {
        fp.newName = null;
        fp.isDelete = true;
      }
      out.push(fp);
      continue;
    }
    if (line.startsWith("@@ ")) throw malformed(i + 1, "a hunk without a file header");
    i++; // text between sections
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Hunks against content

/** Lines with their terminators (the last may have none). */
export function splitLines(s: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (;;) {
    const at = s.indexOf("\n", start);
    if (at < 0) break;
    out.push(s.slice(start, at + 1));
    start = at + 1;
  }
  if (start < s.length) out.push(s.slice(start));
  return out;
}

function matchesAt(lines: string[], old: string[], p: number): boolean {
  if (p < 0 || p + old.length > lines.length) return false;
  for (let j = 0; j < old.length; j++) if (lines[p + j] !== old[j]) return false;
  return true;
}

/** Apply hunks in order; returns the new content or the 1-based number of the failing hunk. */
export function applyHunks(content: string, hunks: Hunk[]): { content: string } | { failed: number } {
  const lines = splitLines(content);
  const out: string[] = [];
  let cursor = 0;
  let drift = 0;
  for (let k = 0; k < hunks.length; k++) {
    const h = hunks[k]!;
    const stated = h.oldCount === 0 ? h.oldStart : h.oldStart - 1;
    const expected = stated + drift;
    const old = h.oldLines;
    let found = -1;
    const ok = (p: number) => p >= cursor && matchesAt(lines, old, p);
    if (h.leading === 0 && h.trailing === 0 && old.length === 0) {
      // pure insertion without context: only where it says
      if (expected >= cursor && expected <= lines.length) found = expected;
    } else if (h.leading === 0 && h.trailing === 0) {
      if (ok(expected)) found = expected;
    } else if (h.leading < h.trailing || h.oldStart === 0) {
      if (ok(0)) found = 0; // context cut short by the start of the file
    } else if (h.trailing < h.leading) {
      const p = lines.length - old.length; // cut short by the end of the file
      if (Math.abs(p - expected) <= MAX_OFFSET_LINES && ok(p)) found = p;
    } else {
      for (let d = 0; d <= MAX_OFFSET_LINES; d++) {
        if (ok(expected - d)) {
          found = expected - d;
          break;
        }
        if (d > 0 && ok(expected + d)) {
          found = expected + d;
          break;
        }
        if (expected - d < cursor && expected + d + old.length > lines.length) break;
      }
    }
    if (found < 0) return { failed: k + 1 };
    for (let j = cursor; j < found; j++) out.push(lines[j]!);
    for (const l of h.newLines) out.push(l);
    cursor = found + old.length;
    drift = found - stated;
  }
  for (let j = cursor; j < lines.length; j++) out.push(lines[j]!);
  return { content: out.join("") };
}

// ---------------------------------------------------------------------------------------
// The virtual view and the checks

type Node = { kind: "file" | "link"; data: string; perm: number };

interface Slot {
  real: string;
  /** components of `real` below the root */
  parts: string[];
  /** the name users see: root-relative, normalised */
  shown: string;
  orig: Node | null;
  origStat?: Stats;
  cur: Node | null;
  /** the first name it was reached by, for result ordering */
  order: number;
  renamedFrom?: string;
  copiedFrom?: string;
  touched: boolean;
}

const latin1ToUtf8 = (s: string) => Buffer.from(s, "latin1").toString("utf8");

function tooLarge(shown: string, size: number): PyroError {
  return new PyroError(
    "FILE_TOO_LARGE",
    `${shown}: ${size} bytes is over the ${PATCH_FILE_MAX_BYTES} byte limit for a patched file`,
    { details: { path: shown, limit: PATCH_FILE_MAX_BYTES } },
  );
}

class View {
  readonly slots = new Map<string, Slot>();
  constructor(readonly rootReal: string) {}

  /** The slot for a patch name (a byte string), loading what is on disk. */
  async get(rawName: string): Promise<Slot> {
    const name = latin1ToUtf8(rawName);
    let parts: string[];
    try {
      parts = userPathParts(name);
    } catch (err) {
      if (err instanceof PyroError && err.code === "INVALID_INPUT")
        throw rejected(`${JSON.stringify(name)}: ${err.message}`);
      throw err;
    }
    const stack: string[] = [];
    for (const p of parts) {
      if (p !== "..") stack.push(p);
      else if (stack.pop() === undefined) stack.push(".."); // resolveInRoot refuses it below
    }
    const shown = stack.join("/");
    let real: string;
    try {
      real = await resolveInRoot(this.rootReal, name, { followFinalSymlink: false });
    } catch (err) {
      if (err instanceof PyroError && err.code === "NOT_A_DIRECTORY")
        throw rejected(`${shown}: a parent of it is not a directory`, { path: shown });
      throw err;
    }
    if (real === this.rootReal)
      throw rejected(`${JSON.stringify(name)}: names the workspace itself, not a file`);
    let slot = this.slots.get(real);
    if (slot) return slot;
    const rel = real.slice(this.rootReal === "/" ? 1 : this.rootReal.length + 1);
    slot = {
      real,
      parts: rel.split("/"),
      shown,
      orig: null,
      cur: null,
      order: this.slots.size,
      touched: false,
    };
    const st = await lstat(real).catch((err) => {
      if (err?.code === "ENOENT") return undefined;
      throw fsError(err, `/workspace/${shown}`);
    });
    if (st) {
      if (st.isDirectory()) throw rejected(`${shown}: is a directory`, { path: shown });
      if (st.isFile()) {
        if (st.size > PATCH_FILE_MAX_BYTES) throw tooLarge(shown, st.size);
        slot.orig = { kind: "file", data: await readBytes(real, shown), perm: st.mode & 0o7777 };
      } else if (st.isSymbolicLink()) {
        const target = await readlink(real, { encoding: "buffer" }).catch((err) =>
          Promise.reject(fsError(err, `/workspace/${shown}`)),
        );
        slot.orig = { kind: "link", data: Buffer.from(target).toString("latin1"), perm: 0o777 };
      } else {
        throw rejected(`${shown}: is not a regular file`, { path: shown });
      }
      slot.origStat = st;
    }
    slot.cur = slot.orig;
    this.slots.set(real, slot);
    return slot;
  }
}

async function readBytes(real: string, shown: string): Promise<string> {
  const fh = await open(real, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK).catch((err) =>
    Promise.reject(fsError(err, `/workspace/${shown}`)),
  );
  try {
    const buf = await fh.readFile();
    if (buf.byteLength > PATCH_FILE_MAX_BYTES) throw tooLarge(shown, buf.byteLength);
    return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString("latin1");
  } finally {
    await fh.close();
  }
}

function withExecBit(perm: number, mode: number | undefined): number {
  if (mode === 0o100755) return perm | ((perm & 0o444) >> 2) | 0o100;
  if (mode === 0o100644) return perm & ~0o111;
  return perm;
}

function blobOidOf(data: string): string {
  const h = new Bun.CryptoHasher("sha1");
  h.update(`blob ${data.length}\0`);
  h.update(Buffer.from(data, "latin1"));
  return h.digest("hex");
}

/** Run every section against the view; throws PATCH_REJECTED on the first problem. */
async function check(view: View, sections: FilePatch[]): Promise<number> {
  let hunks = 0;
  for (const fp of sections) {
    const label = latin1ToUtf8((fp.newName ?? fp.oldName)!);
    const hunksOn = (content: string, shown: string): string => {
      const r = applyHunks(content, fp.hunks);
      if ("failed" in r) {
        const h = fp.hunks[r.failed - 1]!;
        throw rejected(`${shown}: hunk ${r.failed} does not apply at line ${h.oldStart}`, {
          path: shown,
          hunk: r.failed,
          line: h.oldStart,
        });
      }
      if (r.content.length > PATCH_FILE_MAX_BYTES) throw tooLarge(shown, r.content.length);
      return r.content;
    };
    const wantKind = (mode: number | undefined): "file" | "link" => (mode === 0o120000 ? "link" : "file");
    /** The node must be what the section's mode says (a regular file when it says nothing). */
    const expectKind = (slot: Slot, mode: number | undefined) => {
      const node = slot.cur!;
      if (node.kind !== wantKind(mode)) {
        throw rejected(
          node.kind === "link"
            ? `${slot.shown}: is a symbolic link, the patch expects a regular file`
            : `${slot.shown}: is a regular file, the patch expects a symbolic link`,
          { path: slot.shown },
        );
      }
    };

    if (fp.binary) {
      if (
        fp.binary === "no-data" &&
        fp.isDelete &&
        fp.oldOid &&
        fp.oldOid.length >= 7 &&
        !/^0+$/.test(fp.oldOid)
      ) {
        const slot = await view.get(fp.oldName!);
        if (!slot.cur)
          throw rejected(`${slot.shown}: cannot delete, it does not exist`, { path: slot.shown });
        if (!blobOidOf(slot.cur.data).startsWith(fp.oldOid)) {
          throw rejected(`${slot.shown}: cannot delete, its content differs from the patch's`, {
            path: slot.shown,
          });
        }
        slot.cur = null;
        slot.touched = true;
        continue;
      }
      throw rejected(
        fp.binary === "data"
          ? `${label}: binary patches are not supported`
          : `${label}: the patch only says the binary file differs; it carries no content to apply`,
        { path: label },
      );
    }

    if (fp.isNew && !fp.isRename && !fp.isCopy) {
      const slot = await view.get(fp.newName!);
      if (slot.cur) throw rejected(`${slot.shown}: cannot add, it already exists`, { path: slot.shown });
      const data = hunksOn("", slot.shown);
      const kind = wantKind(fp.newMode);
      slot.cur = { kind, data, perm: kind === "link" ? 0o777 : fp.newMode === 0o100755 ? 0o755 : 0o644 };
      slot.touched = true;
    } else if (fp.isDelete) {
      const slot = await view.get(fp.oldName!);
      if (!slot.cur) throw rejected(`${slot.shown}: cannot delete, it does not exist`, { path: slot.shown });
      if (fp.git || slot.cur.kind === "link") expectKind(slot, fp.oldMode);
      const rest = hunksOn(slot.cur.data, slot.shown);
      if (rest !== "") {
        throw rejected(`${slot.shown}: cannot delete, it has content the patch does not remove`, {
          path: slot.shown,
        });
      }
      slot.cur = null;
      slot.touched = true;
    } else if (fp.isRename || fp.isCopy) {
      const src = await view.get(fp.oldName!);
      const dst = await view.get(fp.newName!);
      const verb = fp.isRename ? "rename" : "copy";
      if (!src.cur) throw rejected(`${src.shown}: cannot ${verb}, it does not exist`, { path: src.shown });
      if (fp.oldMode !== undefined || fp.hunks.length > 0) expectKind(src, fp.oldMode);
      if (dst !== src && dst.cur)
        throw rejected(`${dst.shown}: cannot ${verb} onto it, it already exists`, { path: dst.shown });
      const data = hunksOn(src.cur.data, dst.shown);
      const node: Node = { kind: src.cur.kind, data, perm: withExecBit(src.cur.perm, fp.newMode) };
      if (fp.isRename && dst !== src) {
        src.cur = null;
        src.touched = true;
      }
      dst.cur = node;
      dst.touched = true;
      if (fp.isRename) dst.renamedFrom = src.shown;
      else dst.copiedFrom = src.shown;
    } else {
      // modification: git names both sides alike; for diff -u prefer the new name if it exists
      let slot = await view.get(fp.newName!);
      if (!slot.cur && !fp.git && fp.oldName !== null && fp.oldName !== fp.newName) {
        const other = await view.get(fp.oldName);
        if (other.cur) slot = other;
      }
      if (!slot.cur) throw rejected(`${slot.shown}: cannot patch, it does not exist`, { path: slot.shown });
      expectKind(slot, fp.oldMode);
      const data = hunksOn(slot.cur.data, slot.shown);
      slot.cur = {
        kind: slot.cur.kind,
        data,
        perm: slot.cur.kind === "link" ? 0o777 : withExecBit(slot.cur.perm, fp.newMode),
      };
      slot.touched = true;
    }
    hunks += fp.hunks.length;
  }
  return hunks;
}

function sameNode(a: Node | null, b: Node | null): boolean {
  if (a === null || b === null) return a === b;
  return a.kind === b.kind && a.data === b.data && (a.kind === "link" || a.perm === b.perm);
}

// ---------------------------------------------------------------------------------------
// Writing

/** Real directory for `parts` under root, creating what is missing (recorded in `created`). */
async function ensureDirs(
  rootReal: string,
  parts: string[],
  created: string[],
  shown: string,
): Promise<string> {
  let cur = rootReal;
  for (const p of parts) {
    cur = cur === "/" ? `/${p}` : `${cur}/${p}`;
    let st = await lstat(cur).catch((err) => {
      if (err?.code === "ENOENT") return undefined;
      throw fsError(err, `/workspace/${shown}`);
    });
    if (!st) {
      await mkdir(cur, 0o755).catch((err) => {
        if (err?.code !== "EEXIST") throw fsError(err, `/workspace/${shown}`);
      });
      created.push(cur);
      st = await lstat(cur);
    }
    if (st.isSymbolicLink()) {
      throw new PyroError("PATH_OUTSIDE_WORKSPACE", `${shown}: refusing to write through a symbolic link`, {
        details: { path: shown },
      });
    }
    if (!st.isDirectory()) throw rejected(`${shown}: a parent of it is not a directory`, { path: shown });
  }
  return cur;
}

async function writeTemp(dir: string, node: Node, orig: Stats | undefined): Promise<string> {
  const tmp = `${dir}/${tempName()}`;
  const bytes = Buffer.from(node.data, "latin1");
  if (node.kind === "link") {
    await symlink(bytes, tmp);
    return tmp;
  }
  const fh = await open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  try {
    await writeAll(fh, bytes);
    await fh.chmod(node.perm & 0o1777);
    if (orig?.isFile()) await fh.chown(orig.uid, orig.gid).catch(() => {});
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  return tmp;
}

/** A second name for an existing file or link, so it can be put back. */
async function backup(slot: Slot, dir: string): Promise<string> {
  const bak = `${dir}/.pyro-bak-${tempName().slice(10)}`;
  try {
    await link(slot.real, bak); // link(2) does not follow a final symlink
  } catch {
    if (slot.orig!.kind === "link") await symlink(Buffer.from(slot.orig!.data, "latin1"), bak);
    else {
      await copyFile(slot.real, bak, C.COPYFILE_EXCL);
      await chmod(bak, slot.orig!.perm & 0o1777);
      if (slot.origStat) await chown(bak, slot.origStat.uid, slot.origStat.gid).catch(() => {});
    }
  }
  return bak;
}

async function commit(rootReal: string, changed: Slot[]): Promise<void> {
  const created: string[] = [];
  const temps = new Map<Slot, string>();
  const backups = new Map<Slot, string>();
  const cleanup = async () => {
    for (const t of temps.values()) await unlink(t).catch(() => {});
    for (const b of backups.values()) await unlink(b).catch(() => {});
    for (const d of created.reverse()) await rmdir(d).catch(() => {});
  };

  // 1. prepare: nothing a user would see changes yet
  let current = changed[0]!;
  try {
    for (const slot of changed) {
      current = slot;
      const dir = await ensureDirs(rootReal, slot.parts.slice(0, -1), created, slot.shown);
      if (slot.cur) temps.set(slot, await writeTemp(dir, slot.cur, slot.origStat));
      if (slot.orig) backups.set(slot, await backup(slot, dir));
    }
  } catch (err) {
    await cleanup();
    throw fsError(err, `/workspace/${current.shown}`);
  }

  // 2. switch every target over
  const done: Slot[] = [];
  for (const slot of changed) {
    try {
      if (testHooks.failRenameOf === slot.shown) throw Object.assign(new Error("injected"), { code: "EIO" });
      if (slot.cur) await rename(temps.get(slot)!, slot.real);
      else await unlink(slot.real);
      if (slot.cur) temps.delete(slot);
      done.push(slot);
    } catch (err) {
      const failedRestores: string[] = [];
      for (const d of done.reverse()) {
        try {
          if (d.orig) {
            await rename(backups.get(d)!, d.real);
            backups.delete(d);
          } else await unlink(d.real);
        } catch {
          // keep its backup on disk: it is the only copy left
          const bak = backups.get(d);
          backups.delete(d);
          failedRestores.push(
            bak ? `${d.shown} (its old content is in ${bak.slice(rootReal.length + 1)})` : d.shown,
          );
        }
      }
      await cleanup();
      const e = fsError(err, `/workspace/${slot.shown}`);
      throw new PyroError(
        e.code,
        failedRestores.length
          ? `${e.message}; the patch was rolled back, except: ${failedRestores.join(", ")}`
          : `${e.message}; the patch was rolled back`,
        { details: { ...e.details, not_restored: failedRestores } },
      );
    }
  }

  // 3. done: drop backups, and directories that deletions left empty
  for (const b of backups.values()) await unlink(b).catch(() => {});
  for (const slot of changed) {
    if (slot.cur) continue;
    let dir = slot.real.slice(0, slot.real.lastIndexOf("/"));
    while (dir.length > rootReal.length && dir.startsWith(`${rootReal}/`)) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
      dir = dir.slice(0, dir.lastIndexOf("/"));
    }
  }
}

// ---------------------------------------------------------------------------------------

/** Decode the patch bytes (or a string) into the byte-string form the parser works on. */
function patchText(patch: string | Uint8Array): string {
  const bytes =
    typeof patch === "string"
      ? Buffer.from(patch, "utf8")
      : Buffer.from(patch.buffer, patch.byteOffset, patch.byteLength);
  if (bytes.byteLength > PATCH_MAX_BYTES) {
    throw new PyroError(
      "FILE_TOO_LARGE",
      `the patch is ${bytes.byteLength} bytes; the limit is ${PATCH_MAX_BYTES}`,
      {
        details: { limit: PATCH_MAX_BYTES },
      },
    );
  }
  return bytes.toString("latin1");
}

/** Read a patch sent as channel-0 data after the request. */
export async function collectPatch(input: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const p of input) {
    total += p.byteLength;
    if (total > PATCH_MAX_BYTES) {
      throw new PyroError("FILE_TOO_LARGE", `the patch is over the ${PATCH_MAX_BYTES} byte limit`, {
        details: { limit: PATCH_MAX_BYTES },
      });
    }
    parts.push(p);
  }
  return new Uint8Array(Buffer.concat(parts));
}

export async function applyPatch(root: string, patch: string | Uint8Array): Promise<PatchResult> {
  const text = patchText(patch);
  const sections = parsePatch(text);
  if (sections.length === 0) throw rejected("the patch contains no file changes");
  const rootReal = await realRoot(root);
  return serialized(`patch:${rootReal}`, async () => {
    const view = new View(rootReal);
    const hunks = await check(view, sections);
    const slots = [...view.slots.values()].sort((a, b) => a.order - b.order);
    const changed = slots.filter((s) => s.touched && !sameNode(s.orig, s.cur));
    if (changed.length > 0) await commit(rootReal, changed);
    const renamedAway = new Set(slots.filter((s) => s.renamedFrom).map((s) => s.renamedFrom));
    const files: PatchResult["files"] = [];
    let budget = RESULT_FILES_BUDGET;
    let filesTruncated = false;
    for (const s of changed) {
      if (budget <= 0) {
        filesTruncated = true;
        break;
      }
      budget -= s.shown.length * 2 + (s.renamedFrom?.length ?? s.copiedFrom?.length ?? 0) * 2 + 60;
      if (!s.cur && renamedAway.has(s.shown)) continue; // reported as the rename's target
      if (s.renamedFrom && s.renamedFrom !== s.shown)
        files.push({ path: s.shown, status: "renamed", from: s.renamedFrom });
      else if (!s.orig)
        files.push(
          s.copiedFrom
            ? { path: s.shown, status: "added", from: s.copiedFrom }
            : { path: s.shown, status: "added" },
        );
      else if (!s.cur) files.push({ path: s.shown, status: "deleted" });
      else files.push({ path: s.shown, status: "modified" });
    }
    return { files, hunks_applied: hunks, files_truncated: filesTruncated };
  });
}
