import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdir, readFile, readlink, realpath, symlink, writeFile } from "node:fs/promises";
import { readTar, type TarWriteEntry, writeTar } from "../src/protocol/archive/tar.ts";
import {
  chunked,
  collect,
  rejectsWith,
  run,
  snapshotTree,
  tempDir,
} from "../src/protocol/archive/testutil.ts";
import { needs } from "../test/capabilities.ts";
import { exportArchive, importArchive } from "./archive.ts";

const enc = new TextEncoder();
let tmp: Awaited<ReturnType<typeof tempDir>>;
let root: string;
let outside: string;
let outsideBefore: unknown;

beforeEach(async () => {
  tmp = await tempDir("guest-archive");
  const base = await realpath(tmp.path);
  root = `${base}/ws`;
  outside = `${base}/outside`;
  await mkdir(`${root}/src/sub`, { recursive: true });
  await mkdir(outside);
  await writeFile(`${outside}/secret`, "secret");
  await writeFile(`${root}/src/a.txt`, "a");
  await writeFile(`${root}/src/sub/b.txt`, "b");
  await symlink("../outside", `${root}/out`);
  await symlink("src", `${root}/src-link`);
  outsideBefore = await snapshotTree(outside, { mtimes: true, dirMtimes: true });
});

afterEach(async () => {
  try {
    expect(await snapshotTree(outside, { mtimes: true, dirMtimes: true })).toEqual(outsideBefore as never);
  } finally {
    await tmp.cleanup();
  }
});

const file = (path: string, text = "x"): TarWriteEntry => ({
  header: { path, type: "file", size: enc.encode(text).length },
  body: [enc.encode(text)],
});

describe("importArchive", () => {
  test("plain and gzip streams into a new destination", async () => {
    const tar = await collect(writeTar([file("d/one.txt", "1"), file("two.txt", "22")]));
    const r = await importArchive(root, "/workspace/seed", chunked(tar, 100));
    expect(r).toEqual({ path: "/workspace/seed", files: 2, directories: 0, symlinks: 0, bytes: 3 });
    const gz = await importArchive(root, "seed2/deeper", chunked(Bun.gzipSync(tar), 7));
    expect(gz.path).toBe("/workspace/seed2/deeper");
    expect(await readFile(`${root}/seed2/deeper/d/one.txt`, "utf8")).toBe("1");
    // into an inside symlink's target
    await importArchive(root, "src-link", chunked(tar, 512));
    expect(await readFile(`${root}/src/two.txt`, "utf8")).toBe("22");
  });

  test("escapes: destination through an outside symlink, hostile entries", async () => {
    const tar = await collect(writeTar([file("x")]));
    await rejectsWith(importArchive(root, "out", chunked(tar, 512)), "PATH_OUTSIDE_WORKSPACE");
    await rejectsWith(importArchive(root, "out/deeper", chunked(tar, 512)), "PATH_OUTSIDE_WORKSPACE");
    await rejectsWith(importArchive(root, "/tmp", chunked(tar, 512)), "PATH_OUTSIDE_WORKSPACE");
    const hostile = await collect(writeTar([file("../../outside/secret", "pwned")]));
    await rejectsWith(importArchive(root, "/workspace", chunked(hostile, 512)), "PATH_OUTSIDE_WORKSPACE");
    const via = await collect(writeTar([file("out/secret", "pwned")]));
    await rejectsWith(importArchive(root, "/workspace", chunked(via, 512)), "PATH_OUTSIDE_WORKSPACE");
  });

  test("strip_components and malformed input", async () => {
    const tar = await collect(writeTar([file("top/a.txt", "A")]));
    await importArchive(root, "s", chunked(tar, 512), { stripComponents: 1 });
    expect(await readFile(`${root}/s/a.txt`, "utf8")).toBe("A");
    await rejectsWith(
      importArchive(root, "junk", chunked(enc.encode("not a tar at all"), 3)),
      "INVALID_INPUT",
    );
  });
});

describe("exportArchive", () => {
  const names = async (s: ReadableStream<Uint8Array>) => {
    const out: string[] = [];
    for await (const e of readTar(s)) out.push(e.path);
    return out;
  };

  test("a file, a directory, the whole workspace, a symlink", async () => {
    expect(await names(await exportArchive(root, "/workspace/src/a.txt"))).toEqual(["a.txt"]);
    expect(await names(await exportArchive(root, "src"))).toEqual([
      "src/",
      "src/a.txt",
      "src/sub/",
      "src/sub/b.txt",
    ]);
    expect(await names(await exportArchive(root, "/workspace"))).toEqual([
      "out",
      "src/",
      "src/a.txt",
      "src/sub/",
      "src/sub/b.txt",
      "src-link",
    ]);
    const link: string[] = [];
    for await (const e of readTar(await exportArchive(root, "out")))
      link.push(`${e.path} -> ${e.linkTarget}`);
    expect(link).toEqual(["out -> ../outside"]);
    expect(await names(await exportArchive(root, "src", { exclude: (rel) => rel === "src/sub" }))).toEqual([
      "src/",
      "src/a.txt",
    ]);
  });

  test("refusals happen before any byte is streamed", async () => {
    await rejectsWith(exportArchive(root, "out/secret"), "PATH_OUTSIDE_WORKSPACE");
    await rejectsWith(exportArchive(root, "../outside"), "PATH_OUTSIDE_WORKSPACE");
    const e = await rejectsWith(exportArchive(root, "missing"), "FILE_NOT_FOUND");
    expect(e.message).toContain("/workspace/missing");
    expect(e.message).not.toContain(tmp.path);
  });

  test("export → import round trip between workspaces", async () => {
    const other = `${tmp.path}/ws2`;
    await mkdir(other);
    const stream = await exportArchive(root, "/workspace");
    await importArchive(other, "/workspace", stream);
    expect(await snapshotTree(other, { mtimes: true })).toEqual(await snapshotTree(root, { mtimes: true }));
    expect(await readlink(`${other}/out`)).toBe("../outside");
  });

  needs("tar").test("system tar extracts an export", async () => {
    const bytes = await collect(await exportArchive(root, "src"));
    const out = `${tmp.path}/x`;
    await mkdir(out);
    run(["tar", "-xf", "-", "-C", out], { stdin: bytes });
    expect(await snapshotTree(`${out}/src`)).toEqual(await snapshotTree(`${root}/src`));
  });
});
