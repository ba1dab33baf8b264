/**
 * Parsing a unified diff (traditional and git sections, C-quoted names, mode and binary
 * headers) into FilePatch sections. The patch is a "byte string": one char per byte
 * (latin1), so file bytes are kept exactly whatever their encoding. Any malformed input is
 * PATCH_REJECTED naming the patch line; nothing here touches the filesystem.
 */
import { PyroError } from "../../src/protocol/errors.ts";

export const PATCH_MAX_BYTES = 8 * 1024 * 1024;

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

export function rejected(message: string, details: Record<string, unknown> = {}): PyroError {
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
      // Found by test/fuzz.test.ts: "copy from"/"rename from" with "new file mode" (or a
      // /dev/null name) reached the check step with a null source name.
      if ((fp.isRename || fp.isCopy) && (fp.oldName === null || fp.newName === null))
        throw malformed(at, `a ${fp.isRename ? "rename" : "copy"} needs both an old and a new file`);
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

/** Names in the patch are byte strings; users see them as UTF-8. */
export const latin1ToUtf8 = (s: string) => Buffer.from(s, "latin1").toString("utf8");

/** Decode the patch bytes (or a string) into the byte-string form the parser works on. */
export function patchText(patch: string | Uint8Array): string {
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
