import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import {
  chmod,
  readFile as fsRead,
  writeFile as fsWrite,
  link,
  lstat,
  mkdir,
  open,
  readlink,
  realpath,
  stat,
  symlink,
} from "node:fs/promises";
import { rejectsWith, run, snapshotTree, tempDir } from "../src/protocol/archive/testutil.ts";
import { READ_MAX_BYTES, WRITE_MAX_BYTES } from "../src/protocol/limits.ts";
import {
  encodingHint,
  listPath,
  makeDirectory,
  movePath,
  readFile,
  removePath,
  statPath,
  writeFile,
} from "./fs.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

let tmp: Awaited<ReturnType<typeof tempDir>>;
let root: string;
let outside: string;
let outsideBefore: unknown;

beforeEach(async () => {
  tmp = await tempDir("fs");
  const base = await realpath(tmp.path);
  root = `${base}/ws`;
  outside = `${base}/outside`;
  await mkdir(`${root}/src/lib`, { recursive: true });
  await mkdir(`${root}/empty`);
  await mkdir(outside);
  await fsWrite(`${outside}/secret`, "secret");
  await fsWrite(`${root}/src/a.txt`, "hello\n");
  await fsWrite(`${root}/src/lib/b.txt`, "b");
  await fsWrite(`${root}/bin.dat`, new Uint8Array([0, 1, 2, 255]));
  await symlink("src", `${root}/src-link`);
  await symlink("../outside", `${root}/out`);
  await symlink(`${outside}/secret`, `${root}/secret-link`);
  outsideBefore = await snapshotTree(outside, { mtimes: true });
});

afterEach(async () => {
  try {
    expect(await snapshotTree(outside, { mtimes: true })).toEqual(outsideBefore as never);
    expect(existsSync(`${tmp.path}/escape`)).toBe(false);
  } finally {
    await tmp.cleanup();
  }
});

/** Error messages name /workspace paths only. */
async function fails(p: Promise<unknown>, code: string, shown?: string) {
  const err = await rejectsWith(p, code);
  expect(err.message).not.toContain(tmp.path);
  if (shown) expect(err.message).toContain(shown);
  return err;
}

describe("statPath", () => {
  test("files, directories and symlinks (not followed)", async () => {
    await chmod(`${root}/src/a.txt`, 0o640);
    const f = await statPath(root, "/workspace/src/a.txt");
    expect(f).toMatchObject({
      path: "/workspace/src/a.txt",
      artifact_type: "file",
      size_bytes: 6,
      mode: "0640",
    });
    expect(new Date(f.mtime).toISOString()).toBe(f.mtime);
    expect((await statPath(root, "src")).artifact_type).toBe("directory");
    expect(await statPath(root, "out")).toMatchObject({
      artifact_type: "symlink",
      link_target: "../outside",
    });
    expect((await statPath(root, "/workspace")).path).toBe("/workspace");
    await fails(statPath(root, "nope"), "FILE_NOT_FOUND", "/workspace/nope");
    await fails(statPath(root, "out/secret"), "PATH_OUTSIDE_WORKSPACE");
    await fails(statPath(root, "/etc/passwd"), "PATH_OUTSIDE_WORKSPACE");
  });
});

describe("listPath", () => {
  test("sorted, non-recursive by default", async () => {
    const r = await listPath(root, "/workspace");
    expect(r.path).toBe("/workspace");
    expect(r.truncated).toBe(false);
    expect(r.entries.map((e) => e.path)).toEqual([
      "/workspace/bin.dat",
      "/workspace/empty",
      "/workspace/out",
      "/workspace/secret-link",
      "/workspace/src",
      "/workspace/src-link",
    ]);
  });

  test("recursive is depth-first, never descends through symlinks, and truncates", async () => {
    const r = await listPath(root, ".", { recursive: true });
    expect(r.entries.map((e) => e.path.slice("/workspace/".length))).toEqual([
      "bin.dat",
      "empty",
      "out",
      "secret-link",
      "src",
      "src/a.txt",
      "src/lib",
      "src/lib/b.txt",
      "src-link",
    ]);
    const t = await listPath(root, ".", { recursive: true, maxEntries: 3 });
    expect(t.entries.length).toBe(3);
    expect(t.truncated).toBe(true);
    expect((await listPath(root, "src/lib", { maxEntries: 1 })).truncated).toBe(false);
  });

  test("follows an inside symlink, refuses outside ones, errors", async () => {
    expect((await listPath(root, "src-link")).entries.map((e) => e.path)).toEqual([
      "/workspace/src/a.txt",
      "/workspace/src/lib",
    ]);
    await fails(listPath(root, "out"), "PATH_OUTSIDE_WORKSPACE");
    await fails(listPath(root, "src/a.txt"), "NOT_A_DIRECTORY", "/workspace/src/a.txt");
    await fails(listPath(root, "missing"), "FILE_NOT_FOUND", "/workspace/missing");
    await fails(listPath(root, ".", { maxEntries: 0 }), "INVALID_INPUT");
  });
});

describe("readFile", () => {
  test("whole file, truncation, offset, encoding hints", async () => {
    const r = await readFile(root, "src/a.txt");
    expect(dec.decode(r.content)).toBe("hello\n");
    expect(r).toMatchObject({
      path: "/workspace/src/a.txt",
      size_bytes: 6,
      truncated: false,
      encoding_hint: "utf8",
    });
    const t = await readFile(root, "src/a.txt", { maxBytes: 2, offset: 1 });
    expect(dec.decode(t.content)).toBe("el");
    expect(t.truncated).toBe(true);
    const end = await readFile(root, "src/a.txt", { offset: 100 });
    expect(end.content.length).toBe(0);
    expect(end.truncated).toBe(false);
    expect((await readFile(root, "bin.dat")).encoding_hint).toBe("binary");
    // a multi-byte character cut at the window edge is still text
    await fsWrite(`${root}/u.txt`, "aé€😀");
    const cut = await readFile(root, "u.txt", { maxBytes: 5 });
    expect(cut.encoding_hint).toBe("utf8");
    expect((await readFile(root, "u.txt", { offset: 2 })).encoding_hint).toBe("utf8");
    expect(encodingHint(new Uint8Array([0xff, 0xfe, 0x41]), false, false)).toBe("binary");
  });

  test("refusals", async () => {
    await fails(readFile(root, "src"), "IS_A_DIRECTORY", "/workspace/src");
    await fails(readFile(root, "nope.txt"), "FILE_NOT_FOUND", "/workspace/nope.txt");
    await fails(readFile(root, "secret-link"), "PATH_OUTSIDE_WORKSPACE");
    await fails(readFile(root, "out/secret"), "PATH_OUTSIDE_WORKSPACE");
    await fails(readFile(root, "../outside/secret"), "PATH_OUTSIDE_WORKSPACE");
    await fails(readFile(root, "a.txt", { maxBytes: READ_MAX_BYTES + 1 }), "INVALID_INPUT");
    expect(dec.decode((await readFile(root, "src-link/a.txt")).content)).toBe("hello\n");
  });

  test("a fifo is refused without blocking", async () => {
    run(["mkfifo", `${root}/pipe`]);
    await fails(readFile(root, "pipe"), "INVALID_INPUT", "/workspace/pipe");
  });
});

describe("writeFile", () => {
  test("creates parents, returns a stat, keeps no temp files", async () => {
    const r = await writeFile(root, "/workspace/new/dir/f.txt", enc.encode("content"));
    expect(r).toMatchObject({
      path: "/workspace/new/dir/f.txt",
      artifact_type: "file",
      size_bytes: 7,
      mode: "0644",
    });
    expect(await fsRead(`${root}/new/dir/f.txt`, "utf8")).toBe("content");
    await fails(writeFile(root, "other/f.txt", enc.encode("x"), { createParents: false }), "FILE_NOT_FOUND");
    expect((await snapshotTree(root)).filter((e) => e.path.includes(".pyro-tmp"))).toEqual([]);
  });

  test("atomic: replaces the inode (an open reader keeps the old bytes), keeps mode", async () => {
    await chmod(`${root}/src/a.txt`, 0o755);
    const before = await open(`${root}/src/a.txt`, "r");
    const ino = (await stat(`${root}/src/a.txt`)).ino;
    await writeFile(root, "src/a.txt", enc.encode("new"));
    const old = new Uint8Array(6);
    await before.read(old, 0, 6, 0);
    await before.close();
    expect(dec.decode(old)).toBe("hello\n");
    expect(await fsRead(`${root}/src/a.txt`, "utf8")).toBe("new");
    expect((await stat(`${root}/src/a.txt`)).ino).not.toBe(ino);
    expect((await statPath(root, "src/a.txt")).mode).toBe("0755");
    expect((await writeFile(root, "m", enc.encode(""), { mode: 0o4751 })).mode).toBe("0751");
  });

  test("never writes into a hardlink or through a symlink that leads outside", async () => {
    await link(`${outside}/secret`, `${root}/hl`);
    await writeFile(root, "hl", enc.encode("mine"));
    expect(await fsRead(`${root}/hl`, "utf8")).toBe("mine");
    await fails(writeFile(root, "secret-link", enc.encode("x")), "PATH_OUTSIDE_WORKSPACE");
    await fails(writeFile(root, "out/new", enc.encode("x")), "PATH_OUTSIDE_WORKSPACE");
    await fails(writeFile(root, "/workspace/../escape", enc.encode("x")), "PATH_OUTSIDE_WORKSPACE");
    // a symlink inside the workspace is followed to its target
    await writeFile(root, "src-link/a.txt", enc.encode("via link"));
    expect(await fsRead(`${root}/src/a.txt`, "utf8")).toBe("via link");
  });

  test("refusals: directories, the root, size caps", async () => {
    await fails(writeFile(root, "src", enc.encode("x")), "IS_A_DIRECTORY", "/workspace/src");
    await fails(writeFile(root, "/workspace", enc.encode("x")), "IS_A_DIRECTORY");
    await fails(writeFile(root, "src/a.txt/x", enc.encode("x")), "NOT_A_DIRECTORY");
    await fails(writeFile(root, "big", new Uint8Array(11), { maxBytes: 10 }), "FILE_TOO_LARGE");
    await fails(writeFile(root, "big", new Uint8Array(WRITE_MAX_BYTES + 1)), "FILE_TOO_LARGE");
    await fails(
      writeFile(root, "big", new Uint8Array(1), { maxBytes: WRITE_MAX_BYTES + 1 }),
      "INVALID_INPUT",
    );
    expect(existsSync(`${root}/big`)).toBe(false);
  });
});

describe("makeDirectory", () => {
  test("creates, with and without parents", async () => {
    expect((await makeDirectory(root, "d")).artifact_type).toBe("directory");
    await fails(makeDirectory(root, "d"), "ALREADY_EXISTS", "/workspace/d");
    expect((await makeDirectory(root, "d", { parents: true })).path).toBe("/workspace/d");
    await fails(makeDirectory(root, "x/y"), "FILE_NOT_FOUND");
    expect((await makeDirectory(root, "x/y/z", { parents: true })).path).toBe("/workspace/x/y/z");
    await fails(makeDirectory(root, "src/a.txt", { parents: true }), "ALREADY_EXISTS");
    await fails(makeDirectory(root, "out/d", { parents: true }), "PATH_OUTSIDE_WORKSPACE");
  });
});

describe("removePath", () => {
  test("files, empty and full directories, the root", async () => {
    expect(await removePath(root, "src/lib/b.txt")).toEqual({
      path: "/workspace/src/lib/b.txt",
      artifact_type: "file",
      removed: true,
    });
    expect((await removePath(root, "empty")).artifact_type).toBe("directory");
    const e = await fails(removePath(root, "src"), "INVALID_INPUT", "/workspace/src");
    expect((e as unknown as { hint?: string }).hint).toContain("recursive");
    await removePath(root, "src", { recursive: true });
    expect(existsSync(`${root}/src`)).toBe(false);
    await fails(removePath(root, "/workspace", { recursive: true }), "INVALID_INPUT");
    await fails(removePath(root, ".", { recursive: true }), "INVALID_INPUT");
    await fails(removePath(root, "src"), "FILE_NOT_FOUND");
  });

  test("symlinks are removed as links; nothing outside is touched", async () => {
    await mkdir(`${root}/tree`);
    await symlink(outside, `${root}/tree/to-outside`);
    await removePath(root, "tree", { recursive: true });
    expect((await removePath(root, "out")).artifact_type).toBe("symlink");
    await fails(removePath(root, "secret-link/x"), "PATH_OUTSIDE_WORKSPACE");
    await fails(removePath(root, "../outside/secret"), "PATH_OUTSIDE_WORKSPACE");
    expect(await fsRead(`${outside}/secret`, "utf8")).toBe("secret");
  });
});

describe("movePath", () => {
  test("renames exactly, overwrite rules", async () => {
    const r = await movePath(root, "src/a.txt", "/workspace/a2.txt");
    expect(r).toMatchObject({
      path: "/workspace/a2.txt",
      moved_from: "/workspace/src/a.txt",
      artifact_type: "file",
    });
    await fails(movePath(root, "a2.txt", "bin.dat"), "ALREADY_EXISTS", "/workspace/bin.dat");
    await movePath(root, "a2.txt", "bin.dat", { overwrite: true });
    expect(await fsRead(`${root}/bin.dat`, "utf8")).toBe("hello\n");
    await fails(movePath(root, "bin.dat", "src", { overwrite: true }), "IS_A_DIRECTORY");
    await fails(movePath(root, "src", "bin.dat", { overwrite: true }), "NOT_A_DIRECTORY");
    await fails(movePath(root, "src", "src/lib/inner"), "INVALID_INPUT");
    await fails(movePath(root, "bin.dat", "no/such/dir"), "FILE_NOT_FOUND");
    await fails(movePath(root, "nope", "x"), "FILE_NOT_FOUND", "/workspace/nope");
    await fails(movePath(root, "/workspace", "x"), "INVALID_INPUT");
  });

  test("symlinks move as links; escapes are refused", async () => {
    await movePath(root, "out", "out2");
    expect(await readlink(`${root}/out2`)).toBe("../outside");
    expect((await lstat(`${root}/out2`)).isSymbolicLink()).toBe(true);
    await fails(movePath(root, "bin.dat", "../escape"), "PATH_OUTSIDE_WORKSPACE");
    await fails(movePath(root, "bin.dat", "/tmp/escape"), "PATH_OUTSIDE_WORKSPACE");
    await fails(movePath(root, "bin.dat", "out2/escape"), "PATH_OUTSIDE_WORKSPACE");
    await fails(movePath(root, "secret-link/x", "y"), "PATH_OUTSIDE_WORKSPACE");
    await fails(movePath(root, "out2/secret", "stolen"), "PATH_OUTSIDE_WORKSPACE");
  });
});

describe("races and resources", () => {
  /** Exchange `a` and `b` (both in `dir`) with renameat2(RENAME_EXCHANGE) until killed. */
  function swapper(dir: string, a: string, b: string) {
    const js = `const { dlopen, FFIType, ptr } = require("bun:ffi");
      const c = dlopen("libc.so.6", { renameat2: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 } }).symbols;
      const a = Buffer.from(${JSON.stringify(`${a}\0`)}), b = Buffer.from(${JSON.stringify(`${b}\0`)});
      for (;;) if (c.renameat2(-100, ptr(a), -100, ptr(b), 2) !== 0) process.exit(3);`;
    return Bun.spawn([process.execPath, "-e", js], { cwd: dir, stdout: "ignore", stderr: "ignore" });
  }

  test("recursive list and remove never cross a directory swapped for a link to outside", async () => {
    for (const n of ["x1", "x2", "x3"]) await fsWrite(`${outside}/${n}`, n);
    outsideBefore = await snapshotTree(outside, { mtimes: true });
    for (let round = 0; round < 10; round++) {
      await mkdir(`${root}/victim/sub/deeper`, { recursive: true });
      await fsWrite(`${root}/victim/sub/deeper/inside`, "i");
      await symlink(outside, `${root}/victim/sub.l`);
      const p = swapper(`${root}/victim`, "sub", "sub.l");
      try {
        for (let i = 0; i < 50; i++) {
          const l = await listPath(root, "victim", { recursive: true }).catch(() => undefined);
          for (const e of l?.entries ?? []) expect(e.path).not.toMatch(/x[123]$/);
        }
        await removePath(root, "victim", { recursive: true }).catch(() => {});
        expect(p.exitCode).toBeNull(); // the swap ran throughout
      } finally {
        p.kill(9);
        await p.exited;
      }
      await run(["rm", "-rf", `${root}/victim`]);
    }
    // afterEach checks the outside tree is untouched
  });

  test("no fd is left open by any operation, succeeding or failing", async () => {
    const openFds = () => readdirSync("/proc/self/fd").length;
    const ops = async () => {
      await statPath(root, "src/a.txt");
      await listPath(root, ".", { recursive: true });
      await readFile(root, "src-link/a.txt");
      await writeFile(root, "new/deep/w.txt", enc.encode("w"));
      await makeDirectory(root, "made/x", { parents: true });
      await movePath(root, "new/deep/w.txt", "moved.txt");
      await removePath(root, "made", { recursive: true });
      await removePath(root, "new", { recursive: true });
      await removePath(root, "moved.txt");
      for (const bad of [
        () => readFile(root, "out/secret"),
        () => readFile(root, "src"),
        () => writeFile(root, "src/a.txt/x", enc.encode("x")),
        () => listPath(root, "src/a.txt"),
        () => removePath(root, "empty/nothing"),
        () => movePath(root, "nothing", "x"),
        () => makeDirectory(root, "src"),
      ]) {
        await bad().then(
          () => expect.unreachable(),
          () => {},
        );
      }
    };
    await ops(); // warm up lazily opened things (libc, caches)
    const before = openFds();
    for (let i = 0; i < 10; i++) await ops();
    expect(openFds()).toBe(before);
  });
});
