/**
 * The baseline: a git repository in the state dir, checked against system git where it is
 * installed (same tree ids, a valid index, fsck-clean objects).
 */
import { describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { PyroError } from "../src/protocol/errors.ts";
import { needs } from "../test/capabilities.ts";
import { importArchive, importArchiveWithBaseline } from "./archive.ts";
import { BASELINE_GITDIR, blobOid, captureBaseline, readBaselineBlob, SEED_PACK_DIR } from "./baseline.ts";
import { diffWorkspace } from "./diff.ts";
import {
  comparePaths,
  decodeIndex,
  encodeIndex,
  type IndexEntry,
  MODE_EXEC,
  MODE_FILE,
  MODE_LINK,
  readIndexFile,
} from "./git-index.ts";
import { scratch } from "./testing.ts";

const { setup, tempDir } = scratch("pyro-baseline");

function git(gitdir: string, worktree: string, ...args: string[]): string {
  const r = Bun.spawnSync(["git", `--git-dir=${gitdir}`, `--work-tree=${worktree}`, ...args], {
    cwd: worktree,
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1", HOME: worktree },
  });
  if (r.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

function populate(root: string): void {
  mkdirSync(join(root, "src/deep/er"), { recursive: true });
  writeFileSync(join(root, "README.md"), "# hi\n");
  writeFileSync(join(root, "src/main.py"), "print('x')\n");
  writeFileSync(join(root, "src/deep/er/data.bin"), Buffer.from([0, 1, 2, 255]));
  writeFileSync(join(root, "run.sh"), "#!/bin/sh\n");
  chmodSync(join(root, "run.sh"), 0o755);
  symlinkSync("src/main.py", join(root, "link"));
  symlinkSync("/etc/passwd", join(root, "abs-link"));
  writeFileSync(join(root, "a-b"), "sorts before a/ in git trees\n");
  mkdirSync(join(root, "a"));
  writeFileSync(join(root, "a/x"), "x\n");
  writeFileSync(join(root, "ünï cödé.txt"), "utf8 name\n");
  mkdirSync(join(root, "empty-dir"));
}

describe("captureBaseline", () => {
  test("stores files, executables and symlinks; nothing appears in the workspace", async () => {
    const { root, state } = setup();
    populate(root);
    const before = readdirSync(root).sort();
    const r = await captureBaseline(root, state);
    expect(r.files).toBe(9);
    expect(r.tree).toMatch(/^[0-9a-f]{40}$/);
    expect(r.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(readdirSync(root).sort()).toEqual(before);
    expect(existsSync(join(state, BASELINE_GITDIR, "index"))).toBe(true);

    const index = (await readIndexFile(join(state, BASELINE_GITDIR, "index")))!;
    const byPath = new Map(index.entries.map((e) => [e.path, e]));
    expect(byPath.get("run.sh")!.mode).toBe(MODE_EXEC);
    expect(byPath.get("README.md")!.mode).toBe(MODE_FILE);
    expect(byPath.get("link")!.mode).toBe(MODE_LINK);
    expect(byPath.has("empty-dir")).toBe(false);
    const paths = index.entries.map((e) => e.path);
    expect(paths).toEqual([...paths].sort(comparePaths));
    const gitdir = join(state, BASELINE_GITDIR);
    expect(new TextDecoder().decode(await readBaselineBlob(gitdir, byPath.get("link")!.oid))).toBe(
      "src/main.py",
    );
    expect(await readBaselineBlob(gitdir, byPath.get("src/deep/er/data.bin")!.oid)).toEqual(
      new Uint8Array([0, 1, 2, 255]),
    );
  });

  needs("git").test("system git agrees: same tree id, clean status, fsck-clean, modes", async () => {
    const { root, state, parent } = setup();
    populate(root);
    const r = await captureBaseline(root, state);
    const gitdir = join(state, BASELINE_GITDIR);

    // the same tree as git's own add + write-tree in a scratch repository
    const scratch = join(parent, "scratch.git");
    git(scratch, root, "init", "-q");
    git(scratch, root, "add", "-A");
    expect(git(scratch, root, "write-tree").trim()).toBe(r.tree);
    rmSync(scratch, { recursive: true });

    expect(git(gitdir, root, "rev-parse", "HEAD^{tree}").trim()).toBe(r.tree);
    expect(git(gitdir, root, "rev-parse", "HEAD").trim()).toBe(r.commit);
    expect(git(gitdir, root, "status", "--porcelain")).toBe("");
    git(gitdir, root, "fsck", "--strict");
    const tree = git(gitdir, root, "ls-tree", "-r", "HEAD");
    expect(tree).toContain("100755 blob");
    expect(tree).toMatch(/120000 blob [0-9a-f]{40}\tlink/);

    // the index carries usable stat data: git sees exactly what changed
    writeFileSync(join(root, "README.md"), "# changed\n");
    writeFileSync(join(root, "new.txt"), "new\n");
    rmSync(join(root, "a/x"));
    expect(git(gitdir, root, "status", "--porcelain").split("\n").filter(Boolean).sort()).toEqual([
      " D a/x",
      " M README.md",
      "?? new.txt",
    ]);
  });

  needs("git").test("capturing again replaces the baseline", async () => {
    const { root, state } = setup();
    writeFileSync(join(root, "f.txt"), "one\n");
    const first = await captureBaseline(root, state);
    writeFileSync(join(root, "f.txt"), "two\n");
    writeFileSync(join(root, "g.txt"), "g\n");
    const second = await captureBaseline(root, state);
    expect(second.tree).not.toBe(first.tree);
    expect(second.files).toBe(2);
    const index = (await readIndexFile(join(state, BASELINE_GITDIR, "index")))!;
    const f = index.entries.find((e) => e.path === "f.txt")!;
    expect(f.oid).toBe(blobOid(new TextEncoder().encode("two\n")));
    expect(git(join(state, BASELINE_GITDIR), root, "rev-parse", "HEAD^{tree}").trim()).toBe(second.tree);
  });

  test("an empty workspace has git's empty tree", async () => {
    const { root, state } = setup();
    const r = await captureBaseline(root, state);
    expect(r).toMatchObject({ files: 0, tree: "4b825dc642cb6eb9a060e54bf8d69288fbee4904" });
  });

  test("a state dir inside the root is left out", async () => {
    const { root } = setup();
    writeFileSync(join(root, "f.txt"), "f\n");
    const r = await captureBaseline(root, join(root, ".pyro-state"));
    expect(r.files).toBe(1);
  });

  test("fifos and sockets are not part of the baseline", async () => {
    const { root, state } = setup();
    writeFileSync(join(root, "f.txt"), "f\n");
    Bun.spawnSync(["mkfifo", join(root, "fifo")]);
    const r = await captureBaseline(root, state);
    expect(r.files).toBe(1);
  });

  test("files over the streaming threshold are stored without reading them whole", async () => {
    const { root, state } = setup();
    const big = new Uint8Array(9 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    writeFileSync(join(root, "big.bin"), big);
    await captureBaseline(root, state);
    const index = (await readIndexFile(join(state, BASELINE_GITDIR, "index")))!;
    expect(index.entries[0]!.oid).toBe(blobOid(big));
    expect(await readBaselineBlob(join(state, BASELINE_GITDIR), index.entries[0]!.oid)).toEqual(big);
  });
});

describe("index encoding", () => {
  const entry = (path: string, n: number): IndexEntry => ({
    path,
    mode: MODE_FILE,
    oid: n.toString(16).padStart(40, "0"),
    ctimeS: n,
    ctimeNs: n + 1,
    mtimeS: n + 2,
    mtimeNs: n + 3,
    dev: n + 4,
    ino: n + 5,
    uid: n + 6,
    gid: n + 7,
    size: n + 8,
  });

  test("round trip, including long and non-ASCII names", () => {
    const entries = [entry("a", 1), entry("b/ç.txt", 2), entry(`long/${"x".repeat(5000)}`, 3)];
    const decoded = decodeIndex(encodeIndex(entries));
    expect(decoded.entries).toEqual(entries);
  });

  test("a damaged index is an IO_ERROR, not a wrong answer", () => {
    const bytes = encodeIndex([entry("a", 1)]);
    bytes[20] = bytes[20]! ^ 1;
    expect(() => decodeIndex(bytes)).toThrow(PyroError);
    try {
      decodeIndex(bytes);
    } catch (err) {
      expect((err as PyroError).code).toBe("IO_ERROR");
      expect((err as PyroError).message).toContain("checksum");
    }
  });
});

describe("a baseline captured from the seed stream (archive.import with baseline)", () => {
  /** A seed with every kind of entry a baseline cares about, as GNU tar packs it. */
  function seedTar(): Uint8Array {
    const src = tempDir("seed");
    populate(src);
    const big = new Uint8Array(9 * 1024 * 1024 + 77);
    for (let i = 0; i < big.length; i += 512) big[i] = (i / 512) % 253;
    writeFileSync(join(src, "src/big.bin"), big);
    linkSync(join(src, "README.md"), join(src, "hard-readme"));
    linkSync(join(src, "src/big.bin"), join(src, "big-hard"));
    writeFileSync(join(src, "private.txt"), "mode 600\n");
    chmodSync(join(src, "private.txt"), 0o600);
    mkdirSync(join(src, "proj/.git"), { recursive: true });
    writeFileSync(join(src, "proj/.git/HEAD"), "ref: refs/heads/main\n");
    writeFileSync(join(src, "proj/x.c"), "int x;\n");
    const tar = Bun.spawnSync(["tar", "-cf", "-", "-C", src, "."]);
    expect(tar.exitCode).toBe(0);
    const bytes = new Uint8Array(tar.stdout);
    // the tar really has hardlink entries (typeflag '1'), so the observer's hardlink path runs
    expect(Bun.spawnSync(["tar", "-tvf", "-"], { stdin: bytes }).stdout.toString()).toMatch(/link to/);
    return bytes;
  }
  const source = (bytes: Uint8Array) =>
    (async function* () {
      for (let i = 0; i < bytes.length; i += 65536) yield bytes.subarray(i, i + 65536);
    })();
  const indexOf = async (state: string) =>
    (await readIndexFile(join(state, BASELINE_GITDIR, "index")))!.entries.map((e) => [e.path, e.mode, e.oid]);

  test("equals the baseline captured the old way (import, then a capture that reads every file), reading nothing back", async () => {
    const tar = seedTar();
    const streamed = setup();
    const r = await importArchiveWithBaseline(streamed.root, streamed.state, "/workspace", source(tar));
    expect(r.baseline.files_read).toBe(0);
    const old = setup();
    await importArchive(old.root, "/workspace", source(tar));
    const plain = await captureBaseline(old.root, old.state);
    expect(r.baseline.tree).toBe(plain.tree);
    expect(r.baseline.files).toBe(plain.files);
    expect(await indexOf(streamed.state)).toEqual(await indexOf(old.state));
    // the seed's blobs are not loose objects: they stay raw in the seed pack, read on demand
    const gitdir = join(streamed.state, BASELINE_GITDIR);
    const has = (text: string) => {
      const oid = blobOid(new TextEncoder().encode(text));
      return existsSync(join(gitdir, "objects", oid.slice(0, 2), oid.slice(2)));
    };
    expect(has("int x;\n")).toBe(false);
    const packs = readdirSync(join(gitdir, SEED_PACK_DIR)).sort();
    expect(packs.length).toBe(2);
    expect(packs[0]!.endsWith(".idx") && packs[1]!.endsWith(".pack")).toBe(true);
    // every blob the index names reads back whole (checked against its oid)
    for (const [, , oid] of await indexOf(streamed.state)) {
      expect(blobOid(await readBaselineBlob(gitdir, oid as string))).toBe(oid as string);
    }
    // .git contents are not stored (a capture never takes them); proj/x.c beside it is
    const idx = readFileSync(join(gitdir, SEED_PACK_DIR, packs[0]!), "utf8");
    expect(idx).toContain(blobOid(new TextEncoder().encode("int x;\n")));
    expect(idx).not.toContain(blobOid(new TextEncoder().encode("ref: refs/heads/main\n")));
    // system git: the index and trees are whole, so status works (it reads no blob); a plain
    // capture afterwards stores every blob loose, drops the pack, and fsck is clean
    expect(git(gitdir, streamed.root, "status", "--porcelain")).toBe("");
    const again = await captureBaseline(streamed.root, streamed.state);
    expect(again.tree).toBe(plain.tree);
    expect(readdirSync(join(gitdir, SEED_PACK_DIR))).toEqual([]);
    expect(has("int x;\n")).toBe(true);
    git(gitdir, streamed.root, "fsck", "--full", "--strict");
  });

  test("a diff of a modified, a deleted and a large seeded file shows the old content from the seed pack", async () => {
    const { root, state } = setup();
    await importArchiveWithBaseline(root, state, "/workspace", source(seedTar()));
    writeFileSync(join(root, "README.md"), "# changed\n");
    rmSync(join(root, "src/main.py"));
    rmSync(join(root, "hard-readme"));
    const d = await diffWorkspace(root, state);
    expect(d.files.map((f) => [f.path, f.status]).sort()).toEqual(
      [
        ["README.md", "modified"],
        ["hard-readme", "deleted"],
        ["src/main.py", "deleted"],
      ].sort(),
    );
    expect(d.patch).toContain("-# hi\n+# changed");
    expect(d.patch).toContain("-print('x')");
    // the 9 MiB file (streamed past the pack writer in many chunks) reads back whole
    const index = await indexOf(state);
    const bigOid = index.find(([p]) => p === "src/big.bin")![2] as string;
    const big = await readBaselineBlob(join(state, BASELINE_GITDIR), bigOid);
    expect(big.byteLength).toBe(9 * 1024 * 1024 + 77);
    expect(blobOid(big)).toBe(bigOid);
  });

  test("a damaged seed pack is an IO_ERROR, never other content; a failed import leaves no pack", async () => {
    const { root, state } = setup();
    await importArchiveWithBaseline(root, state, "/workspace", source(seedTar()));
    const gitdir = join(state, BASELINE_GITDIR);
    const pack = readdirSync(join(gitdir, SEED_PACK_DIR)).find((n) => n.endsWith(".pack"))!;
    const packPath = join(gitdir, SEED_PACK_DIR, pack);
    const bytes = new Uint8Array(readFileSync(packPath));
    for (let i = 0; i < bytes.length; i++) bytes[i] = bytes[i]! ^ 0x55;
    chmodSync(packPath, 0o644);
    writeFileSync(packPath, bytes);
    const oid = blobOid(new TextEncoder().encode("# hi\n"));
    const err = await readBaselineBlob(gitdir, oid).catch((e) => e);
    expect(err).toBeInstanceOf(PyroError);
    expect(err.code).toBe("IO_ERROR");

    // an import that fails half way: its temp pack is removed and no baseline ref is written
    const fresh = setup();
    const tar = seedTar();
    const broken = (async function* () {
      yield tar.subarray(0, 512 * 40);
      throw new Error("connection lost");
    })();
    await expect(importArchiveWithBaseline(fresh.root, fresh.state, "/workspace", broken)).rejects.toThrow();
    const freshGit = join(fresh.state, BASELINE_GITDIR);
    expect(readdirSync(join(freshGit, SEED_PACK_DIR))).toEqual([]);
    expect(existsSync(join(freshGit, "refs/heads/baseline"))).toBe(false);
  });

  test("the diff after a seeded import is empty; one changed file is exactly that file", async () => {
    const { root, state } = setup();
    await importArchiveWithBaseline(root, state, "/workspace", source(seedTar()));
    const clean = await diffWorkspace(root, state);
    expect(clean.files).toEqual([]);
    expect(clean.patch).toBe("");
    writeFileSync(join(root, "src/main.py"), "print('y')\n");
    const one = await diffWorkspace(root, state);
    expect(one.files.map((f) => [f.path, f.status])).toEqual([["src/main.py", "modified"]]);
    expect(one.patch).toContain("+print('y')");
  });

  test("files already in /workspace, or changed after the import wrote them, are read like a plain capture", async () => {
    const { root, state } = setup();
    writeFileSync(join(root, "before.txt"), "was here\n");
    const r = await importArchiveWithBaseline(root, state, "/workspace", source(seedTar()));
    expect(r.baseline.files_read).toBe(1);
    const blob = await readBaselineBlob(
      join(state, BASELINE_GITDIR),
      (await indexOf(state)).find(([p]) => p === "before.txt")![2] as string,
    );
    expect(new TextDecoder().decode(blob)).toBe("was here\n");
    expect(readFileSync(join(root, "README.md"), "utf8")).toBe("# hi\n");
  });

  test("only an import into /workspace itself can capture the baseline", async () => {
    const { root, state } = setup();
    const err = await importArchiveWithBaseline(root, state, "/workspace/sub", source(seedTar())).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(PyroError);
    expect(err.code).toBe("INVALID_INPUT");
    expect(existsSync(join(root, "sub"))).toBe(false);
  });
});
