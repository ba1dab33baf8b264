/**
 * Checking a parsed patch against the workspace without writing anything: every section
 * applies in order to a virtual view of the files it names (loaded from disk through the
 * workspace path rules), hunks must match exactly (fuzz 0, bounded offset), and size, kind
 * and mode rules hold. The first problem is PATCH_REJECTED (or FILE_TOO_LARGE); on success
 * the view's slots say what to write.
 */
import { constants as C, type Stats } from "node:fs";
import { lstat, open, readlink } from "node:fs/promises";
import { fsError } from "../../src/protocol/archive/index.ts";
import { PyroError } from "../../src/protocol/errors.ts";
import { fdPath } from "../../src/protocol/openat.ts";
import { type Resolved, resolvePath, userPathParts } from "../paths.ts";
import { type FilePatch, type Hunk, latin1ToUtf8, rejected } from "./parse.ts";

export const PATCH_FILE_MAX_BYTES = 16 * 1024 * 1024;
/** How far (in lines) a hunk is looked for around its stated position. */
export const MAX_OFFSET_LINES = 1000;

// Hunks against content
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

// The virtual view and the checks
// The virtual view and the checks

export type Node = { kind: "file" | "link"; data: string; perm: number };

export interface Slot {
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

function tooLarge(shown: string, size: number): PyroError {
  return new PyroError(
    "FILE_TOO_LARGE",
    `${shown}: ${size} bytes is over the ${PATCH_FILE_MAX_BYTES} byte limit for a patched file`,
    { details: { path: shown, limit: PATCH_FILE_MAX_BYTES } },
  );
}

export class View {
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
    let r: Resolved;
    try {
      r = await resolvePath(this.rootReal, name, { followFinalSymlink: false });
    } catch (err) {
      if (err instanceof PyroError && err.code === "NOT_A_DIRECTORY")
        throw rejected(`${shown}: a parent of it is not a directory`, { path: shown });
      throw err;
    }
    try {
      return await this.load(r, name, shown);
    } finally {
      r.close();
    }
  }

  /** Read what is there through the fds the resolution holds (paths.ts: race-free). */
  private async load(r: Resolved, name: string, shown: string): Promise<Slot> {
    const real = r.real;
    // the existing object as /proc/self/fd/N/name, N its parent's fd
    const at = r.fd === undefined ? undefined : `${fdPath(r.parentFd(false))}/${r.name}`;
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
    const st = await (at === undefined ? Promise.resolve(undefined) : lstat(at)).catch((err) => {
      if (err?.code === "ENOENT") return undefined;
      throw fsError(err, `/workspace/${shown}`);
    });
    if (st) {
      if (st.isDirectory()) throw rejected(`${shown}: is a directory`, { path: shown });
      if (st.isFile()) {
        if (st.size > PATCH_FILE_MAX_BYTES) throw tooLarge(shown, st.size);
        slot.orig = { kind: "file", data: await readBytes(at!, shown), perm: st.mode & 0o7777 };
      } else if (st.isSymbolicLink()) {
        const target = await readlink(at!, { encoding: "buffer" }).catch((err) =>
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
export async function check(view: View, sections: FilePatch[]): Promise<number> {
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

export function sameNode(a: Node | null, b: Node | null): boolean {
  if (a === null || b === null) return a === b;
  return a.kind === b.kind && a.data === b.data && (a.kind === "link" || a.perm === b.perm);
}
