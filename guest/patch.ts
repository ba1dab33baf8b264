/**
 * `patch.apply`: a unified diff (as `git diff` or `diff -u` write it) applied to the
 * workspace, checked completely before anything is written and applied all-or-nothing.
 * This file is the public surface; the stages are patch/parse.ts (text → sections),
 * patch/check.ts (hunks and the virtual view) and patch/commit.ts (the all-or-nothing write).
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
import { PyroError } from "../src/protocol/errors.ts";
import { serialized } from "./baseline.ts";
import { check, sameNode, View } from "./patch/check.ts";
import { commit } from "./patch/commit.ts";
import { PATCH_MAX_BYTES, parsePatch, patchText, rejected } from "./patch/parse.ts";
import { realRoot } from "./paths.ts";

export { applyHunks, MAX_OFFSET_LINES, PATCH_FILE_MAX_BYTES, splitLines } from "./patch/check.ts";
export { testHooks } from "./patch/commit.ts";
export { type FilePatch, type Hunk, PATCH_MAX_BYTES, parsePatch } from "./patch/parse.ts";

export type PatchFileStatus = "added" | "modified" | "deleted" | "renamed";

/** JSON bytes the files list may take in a result (it must fit one protocol frame). */
const RESULT_FILES_BUDGET = 768 * 1024;

export interface PatchResult {
  files: { path: string; status: PatchFileStatus; from?: string }[];
  hunks_applied: number;
  /** the files list stops early (huge patches); the patch was applied whole all the same */
  files_truncated: boolean;
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
