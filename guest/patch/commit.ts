/**
 * Writing a checked patch all-or-nothing: each new content goes to a temp file beside its
 * target and each existing target gets a backup link; then every temp file is renamed over
 * its target (or the target unlinked). A failure undoes the steps done from the backups and
 * removes temp files and created directories; directories emptied by deletions go.
 *
 * Race freedom: every target is re-resolved through held fds (paths.ts) and must still
 * resolve where the check saw it; missing parents are created with mkdirat relative to the
 * held parent and reopened O_NOFOLLOW; temp files, backups, renames and unlinks name the
 * target as /proc/self/fd/N/name (N its held parent); created and emptied directories are
 * removed with unlinkat(AT_REMOVEDIR) relative to their held parents. Nothing is looked up
 * again by a path string, so a directory swapped for a symlink mid-apply cannot redirect it.
 */
import { constants as C, type Stats } from "node:fs";
import { chmod, chown, copyFile, link, open, rename, symlink, unlink } from "node:fs/promises";
import { fsError, tempName, writeAll } from "../../src/protocol/archive/index.ts";
import { PyroError } from "../../src/protocol/errors.ts";
import { AT_REMOVEDIR, fdPath, unlinkat } from "../../src/protocol/openat.ts";
import { type Resolved, resolvePath } from "../paths.ts";
import type { Node, Slot } from "./check.ts";
import { rejected } from "./parse.ts";

/** Tests only: make the rename (or unlink) of this path fail during the commit. */
export const testHooks: { failRenameOf?: string } = {};

// Writing

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
async function backup(slot: Slot, dir: string, at: string): Promise<string> {
  const bak = `${dir}/.pyro-bak-${tempName().slice(10)}`;
  try {
    await link(at, bak); // link(2) does not follow a final symlink
  } catch {
    if (slot.orig!.kind === "link") await symlink(Buffer.from(slot.orig!.data, "latin1"), bak);
    else {
      await copyFile(at, bak, C.COPYFILE_EXCL);
      await chmod(bak, slot.orig!.perm & 0o1777);
      if (slot.origStat) await chown(bak, slot.origStat.uid, slot.origStat.gid).catch(() => {});
    }
  }
  return bak;
}

export async function commit(rootReal: string, changed: Slot[]): Promise<void> {
  const held: Resolved[] = [];
  try {
    await commitHeld(rootReal, changed, held);
  } finally {
    for (const r of held) r.close();
  }
}

async function commitHeld(rootReal: string, changed: Slot[], held: Resolved[]): Promise<void> {
  // directories the prepare step created, as (held parent fd, name), oldest first
  const created: { dir: number; name: string }[] = [];
  const temps = new Map<Slot, string>();
  const backups = new Map<Slot, string>();
  // each target as /proc/self/fd/N/name, N its parent held open by the race-free walk (paths.ts)
  const targets = new Map<Slot, string>();
  const cleanup = async () => {
    for (const t of temps.values()) await unlink(t).catch(() => {});
    for (const b of backups.values()) await unlink(b).catch(() => {});
    for (const d of created.reverse()) removeDirAt(d.dir, d.name);
  };

  // 1. prepare: nothing a user would see changes yet
  let current = changed[0]!;
  try {
    for (const slot of changed) {
      current = slot;
      const r = await resolvePath(rootReal, slot.parts.join("/"), { followFinalSymlink: false });
      held.push(r);
      if (r.real !== slot.real) throw rejected(`${slot.shown}: changed while the patch was applied`);
      const made: string[][] = [];
      let parentFd: number;
      try {
        parentFd = r.parentFd(true, made);
      } finally {
        // each made directory's parent is held by r until the end of the commit
        for (const parts of made) created.push({ dir: r.fds[parts.length - 1]!, name: parts.at(-1)! });
      }
      const dir = fdPath(parentFd);
      targets.set(slot, `${dir}/${r.name}`);
      if (slot.cur) temps.set(slot, await writeTemp(dir, slot.cur, slot.origStat));
      if (slot.orig) backups.set(slot, await backup(slot, dir, targets.get(slot)!));
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
      if (slot.cur) await rename(temps.get(slot)!, targets.get(slot)!);
      else await unlink(targets.get(slot)!);
      if (slot.cur) temps.delete(slot);
      done.push(slot);
    } catch (err) {
      const failedRestores: string[] = [];
      for (const d of done.reverse()) {
        try {
          if (d.orig) {
            await rename(backups.get(d)!, targets.get(d)!);
            backups.delete(d);
          } else await unlink(targets.get(d)!);
        } catch {
          // keep its backup on disk: it is the only copy left
          const bak = backups.get(d);
          backups.delete(d);
          failedRestores.push(
            bak
              ? `${d.shown} (its old content is in ${[...d.parts.slice(0, -1), bak.slice(bak.lastIndexOf("/") + 1)].join("/")})`
              : d.shown,
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
  for (const [i, slot] of changed.entries()) {
    if (slot.cur) continue;
    // fds[k] holds parts[k] (a directory emptied, maybe) in its parent; never the root itself
    const r = held[i]!;
    for (let k = slot.parts.length - 2; k >= 0; k--) {
      const parent = r.fds[k];
      if (parent === undefined || !removeDirAt(parent, slot.parts[k]!)) break;
    }
  }
}

/** rmdir of `name` in `dir` (only an empty directory goes); false if it stayed. */
function removeDirAt(dir: number, name: string): boolean {
  try {
    unlinkat(dir, name, AT_REMOVEDIR);
    return true;
  } catch {
    return false;
  }
}
