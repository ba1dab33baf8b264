/**
 * Test support for the agent's workspace tests: temp trees removed after each test, files
 * written into them, and a hash of what a tree holds (not part of the agent).
 */
import { afterEach } from "bun:test";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Call at a test file's top level (it registers the afterEach): `tempDir()` makes a fresh
 * directory, `setup()` a workspace root with a state directory beside it (the agent's
 * layout), `onCleanup(fn)` adds a step; after each test every step runs, last first.
 */
export function scratch(prefix: string) {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });
  const tempDir = (tag = "ws"): string => {
    const dir = mkdtempSync(join(tmpdir(), `${prefix}-${tag}-`));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  };
  return {
    tempDir,
    setup(): { root: string; state: string; parent: string } {
      const parent = tempDir();
      const root = join(parent, "ws");
      mkdirSync(root);
      return { root, state: join(parent, "state"), parent };
    },
    onCleanup: (fn: () => void): void => {
      cleanups.push(fn);
    },
  };
}

/** Write `root/p` (parents made), with `mode` when given. */
export function write(root: string, p: string, content: string | Uint8Array, mode?: number): void {
  mkdirSync(join(root, p, ".."), { recursive: true });
  writeFileSync(join(root, p), content);
  if (mode !== undefined) chmodSync(join(root, p), mode);
}

/** Files under `root` from a record: path → content, `{ link }` for a symlink, `{ exec }` for a 0755 file. */
export function writeTree(
  root: string,
  files: Record<string, string | { link: string } | { exec: string }>,
): void {
  for (const [p, v] of Object.entries(files)) {
    if (typeof v === "string") write(root, p, v);
    else if ("exec" in v) write(root, p, v.exec, 0o755);
    else {
      mkdirSync(join(root, p, ".."), { recursive: true });
      symlinkSync(v.link, join(root, p));
    }
  }
}

/**
 * Hash of everything under root: names, types, permission bits, contents, link targets.
 * `asGit`: only what git records (directories only through what they hold, of a file's mode
 * only the exec bit); `dirModes: false` leaves directory modes out.
 */
export function treeHash(root: string, opts: { asGit?: boolean; dirModes?: boolean } = {}): string {
  const h = new Bun.CryptoHasher("sha256");
  const walk = (rel: string) => {
    for (const name of readdirSync(rel ? join(root, rel) : root).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(root, p));
      if (st.isDirectory()) {
        if (!opts.asGit)
          h.update(`D ${p} ${opts.dirModes === false ? "" : (st.mode & 0o7777).toString(8)}\n`);
        walk(p);
      } else if (st.isSymbolicLink()) h.update(`L ${p} -> ${readlinkSync(join(root, p))}\n`);
      else {
        const mode = opts.asGit ? (st.mode & 0o100 ? "x" : "-") : (st.mode & 0o7777).toString(8);
        h.update(`F ${p} ${mode} ${st.size}\n`);
        h.update(readFileSync(join(root, p)));
      }
    }
  };
  walk("");
  return h.digest("hex");
}
