import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { link, lstat, mkdir, readFile, readlink, stat, symlink, writeFile } from "node:fs/promises";
import { needs } from "../../../test/capabilities.ts";
import { maybeGunzip } from "./gzip.ts";
import { encodeTarHeader, type TarWriteEntry, writeTar } from "./tar.ts";
import { chunked, collect, rejectsWith, run, snapshotTree, tempDir } from "./testutil.ts";
import { unpackTar } from "./unpack.ts";

const enc = new TextEncoder();

let tmp: Awaited<ReturnType<typeof tempDir>>;
let root: string; // extraction destination
let outside: string; // a sibling that must never change
let outsideBefore: unknown;

beforeEach(async () => {
  tmp = await tempDir("unpack");
  root = `${tmp.path}/root`;
  outside = `${tmp.path}/outside`;
  await mkdir(root);
  await mkdir(outside, { mode: 0o750 });
  await writeFile(`${outside}/secret`, "secret");
  outsideBefore = await outsideState();
});

afterEach(async () => {
  // every test, passing or refused, must leave the outside untouched
  try {
    expect(await outsideState()).toEqual(outsideBefore as never);
  } finally {
    await tmp.cleanup();
  }
});

async function outsideState() {
  const st = await stat(outside);
  return {
    top: (await snapshotTree(tmp.path)).filter((r) => !/^(root|src)(\/|$)/.test(r.path)).map((r) => r.path),
    tree: await snapshotTree(outside, { mtimes: true, dirMtimes: true }),
    mode: st.mode,
    mtime: st.mtimeMs,
  };
}

const file = (path: string, text = "data", mode = 0o644): TarWriteEntry => {
  const data = enc.encode(text);
  return { header: { path, type: "file", size: data.length, mode, mtime: 1_650_000_000 }, body: [data] };
};
const sym = (path: string, target: string): TarWriteEntry => ({
  header: { path, type: "symlink", linkTarget: target },
});
const hard = (path: string, target: string): TarWriteEntry => ({
  header: { path, type: "hardlink", linkTarget: target },
});
const dir = (path: string, mode = 0o755): TarWriteEntry => ({
  header: { path, type: "directory", mode, mtime: 1_600_000_000 },
});

function tar(entries: TarWriteEntry[]): AsyncIterable<Uint8Array> {
  return writeTar(entries);
}

/** A raw header with any typeflag (devices, fifos), checksum fixed up. */
function special(path: string, typeflag: string): Uint8Array {
  const h = encodeTarHeader({ path, type: "file", size: 0 });
  h[156] = typeflag.charCodeAt(0);
  h.fill(0x20, 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.set(enc.encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
  const out = new Uint8Array(512 + 1024);
  out.set(h, 0);
  return out;
}

describe("escapes are refused with PATH_OUTSIDE_WORKSPACE", () => {
  for (const name of ["../x", "/etc/passwd", "a/../../x", "a/b/../../../x", "./../x", "a/.."]) {
    test(`entry name ${name}`, async () => {
      const err = await rejectsWith(unpackTar(tar([file(name)]), root), "PATH_OUTSIDE_WORKSPACE");
      expect(err.message).toContain(JSON.stringify(name));
      expect(await snapshotTree(root)).toEqual([]);
    });
  }

  test("writing through a symlink that already exists in the destination", async () => {
    await symlink(outside, `${root}/link`);
    await symlink("/tmp", `${root}/tmplink`);
    const unique = `pyro-escape-${Date.now()}`;
    await rejectsWith(unpackTar(tar([file("link/secret", "pwned")]), root), "PATH_OUTSIDE_WORKSPACE");
    await rejectsWith(unpackTar(tar([file(`tmplink/${unique}`)]), root), "PATH_OUTSIDE_WORKSPACE");
    await rejectsWith(unpackTar(tar([dir(`tmplink/${unique}`)]), root), "PATH_OUTSIDE_WORKSPACE");
    expect(existsSync(`/tmp/${unique}`)).toBe(false);
  });

  test("writing through a symlink the archive created earlier (absolute and relative)", async () => {
    for (const target of [outside, "../outside", "/tmp"]) {
      const e = await rejectsWith(
        unpackTar(tar([sym("s", target), file("s/secret", "pwned")]), root),
        "PATH_OUTSIDE_WORKSPACE",
      );
      expect(e.message).toContain("s/secret");
    }
    // even a symlink pointing inside is never written through
    await rejectsWith(
      unpackTar(tar([dir("real"), sym("in", "real"), file("in/f")]), root),
      "PATH_OUTSIDE_WORKSPACE",
    );
  });

  test("hardlinks pointing outside", async () => {
    for (const target of [
      "../outside/secret",
      "/etc/passwd",
      `${outside}/secret`,
      "a/../../outside/secret",
    ]) {
      await rejectsWith(unpackTar(tar([hard("h", target)]), root), "PATH_OUTSIDE_WORKSPACE");
    }
    // through an archive symlink: the parent walk refuses it
    await rejectsWith(
      unpackTar(tar([sym("s", outside), hard("h", "s/secret")]), root),
      "PATH_OUTSIDE_WORKSPACE",
    );
    // to a symlink itself: not a regular file
    await rejectsWith(
      unpackTar(tar([sym("s2", `${outside}/secret`), hard("h2", "s2")]), root),
      "INVALID_INPUT",
    );
  });

  for (const [flag, what] of [
    ["3", "character device"],
    ["4", "block device"],
    ["6", "fifo"],
  ] as const) {
    test(`${what} entry`, async () => {
      const err = await rejectsWith(
        unpackTar(chunked(special("dev", flag), 100), root),
        "PATH_OUTSIDE_WORKSPACE",
      );
      expect(err.message).toContain('"dev"');
      expect(existsSync(`${root}/dev`)).toBe(false);
    });
  }
});

describe("replacing links instead of writing into them", () => {
  test("a file entry replaces an existing symlink, not its target", async () => {
    await symlink(`${outside}/secret`, `${root}/victim`);
    await unpackTar(tar([file("victim", "mine")]), root);
    expect((await lstat(`${root}/victim`)).isFile()).toBe(true);
    expect(await readFile(`${root}/victim`, "utf8")).toBe("mine");
  });

  test("a file entry replaces an existing hardlink to an outside file", async () => {
    await link(`${outside}/secret`, `${root}/hl`);
    await unpackTar(tar([file("hl", "mine")]), root);
    expect(await readFile(`${root}/hl`, "utf8")).toBe("mine");
  });

  test("a directory entry replaces an existing symlink", async () => {
    await symlink(outside, `${root}/d`);
    await unpackTar(tar([dir("d", 0o777), file("d/f")]), root);
    expect((await lstat(`${root}/d`)).isDirectory()).toBe(true);
  });

  test("a directory later replaced by a symlink does not get its mode applied through it", async () => {
    await unpackTar(tar([dir("d", 0o777), sym("d", outside)]), root);
    expect(await readlink(`${root}/d`)).toBe(outside);
  });

  test("a non-empty directory is not replaced by a file", async () => {
    await rejectsWith(unpackTar(tar([file("d/f"), file("d")]), root), "IS_A_DIRECTORY");
  });
});

describe("extraction", () => {
  test("modes (setuid/setgid masked), mtimes, implicit parents, '.' skipped, counts", async () => {
    const rootMode = (await stat(root)).mode;
    const seen: string[] = [];
    const r = await unpackTar(
      tar([
        dir(".", 0o777),
        dir("ro", 0o555),
        file("ro/inside", "x", 0o600),
        file("suid", "s", 0o6755),
        file("deep/er/f.txt", "implicit parents"),
        sym("ln", "deep/er/f.txt"),
        hard("hl", "suid"),
      ]),
      root,
      { onEntry: (p) => seen.push(p) },
    );
    expect(r).toEqual({ files: 4, directories: 1, symlinks: 1, bytes: 1 + 1 + 16 });
    expect(seen).toEqual(["ro", "ro/inside", "suid", "deep/er/f.txt", "ln", "hl"]);
    expect((await stat(root)).mode).toBe(rootMode);
    expect((await stat(`${root}/ro`)).mode & 0o7777).toBe(0o555);
    expect((await stat(`${root}/ro`)).mtimeMs).toBe(1_600_000_000_000);
    expect((await stat(`${root}/ro/inside`)).mode & 0o7777).toBe(0o600);
    expect((await stat(`${root}/suid`)).mode & 0o7777).toBe(0o755);
    expect((await stat(`${root}/suid`)).mtimeMs).toBe(1_650_000_000_000);
    expect((await stat(`${root}/hl`)).ino).toBe((await stat(`${root}/suid`)).ino);
    expect(await readlink(`${root}/ln`)).toBe("deep/er/f.txt");
    // no temp files left behind
    expect((await snapshotTree(root)).filter((e) => e.path.includes(".pyro-tmp-"))).toEqual([]);
  });

  test("stripComponents drops leading names and entries left empty", async () => {
    const r = await unpackTar(tar([dir("top"), file("top/a"), hard("top/b", "top/a"), file("x")]), root, {
      stripComponents: 1,
    });
    expect(r.files).toBe(2);
    expect((await snapshotTree(root)).map((e) => e.path)).toEqual(["a", "b"]);
  });

  test("limits: maxBytes and maxEntries", async () => {
    await rejectsWith(
      unpackTar(tar([file("a", "12345"), file("b", "123456")]), root, { maxBytes: 10 }),
      "FILE_TOO_LARGE",
    );
    await rejectsWith(
      unpackTar(tar([file("c"), file("d"), file("e")]), root, { maxEntries: 2 }),
      "INVALID_INPUT",
    );
  });

  test("a refused entry fails the import after earlier entries were written", async () => {
    await rejectsWith(unpackTar(tar([file("first"), file("../escape")]), root), "PATH_OUTSIDE_WORKSPACE");
    expect(await readFile(`${root}/first`, "utf8")).toBe("data");
  });

  test("malformed streams fail cleanly", async () => {
    await rejectsWith(unpackTar(chunked(new Uint8Array(700).fill(7), 13), root), "INVALID_INPUT");
    const good = await collect(tar([file("a", "x".repeat(3000))]));
    await rejectsWith(unpackTar(chunked(good.subarray(0, 2000), 100), root), "INVALID_INPUT");
    // the partly written file's temp is gone
    expect((await snapshotTree(root)).map((e) => e.path)).toEqual([]);
  });
});

needs("tar").describe("GNU tar archives unpack correctly", () => {
  async function makeSource(): Promise<string> {
    const src = `${tmp.path}/src`;
    const long = `${"l".repeat(110)}/${"m".repeat(130)}`;
    await mkdir(`${src}/${long}`, { recursive: true });
    await writeFile(`${src}/${long}/deep.txt`, "deep");
    await mkdir(`${src}/empty`);
    await mkdir(`${src}/bin`);
    await writeFile(`${src}/bin/run.sh`, "#!/bin/sh\necho hi\n", { mode: 0o755 });
    await writeFile(`${src}/private`, "p", { mode: 0o600 });
    await writeFile(`${src}/ünï.txt`, "u");
    await symlink("bin/run.sh", `${src}/rel-link`);
    await symlink("/nonexistent/abs", `${src}/abs-link`);
    await link(`${src}/private`, `${src}/private-hard`);
    run(["touch", "-h", "-d", "@1500000000", `${src}/rel-link`, `${src}/private`, `${src}/bin/run.sh`]);
    return src;
  }

  for (const variant of ["tar -c", "tar -cz", "tar --format=posix -c"]) {
    test(variant, async () => {
      const src = await makeSource();
      const args = variant.split(" ").slice(1);
      const archive = run(["tar", ...args.slice(0, -1), `${args.at(-1)}f`, "-", "-C", src, "."]);
      await unpackTar(maybeGunzip(chunked(archive, 1000)), root);
      expect(await snapshotTree(root, { mtimes: true })).toEqual(await snapshotTree(src, { mtimes: true }));
      expect((await stat(`${root}/private-hard`)).ino).toBe((await stat(`${root}/private`)).ino);
    });
  }
});
