import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmod, mkdir, symlink, utimes, writeFile } from "node:fs/promises";
import { needs } from "../../../test/capabilities.ts";
import { packTree } from "./pack.ts";
import { readTar } from "./tar.ts";
import { chunked, collect, rejectsWith, run, snapshotTree, tempDir } from "./testutil.ts";
import { unpackTar } from "./unpack.ts";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let src: string;
const LONG = `${"a".repeat(120)}/${"b".repeat(140)}/${"c".repeat(101)}.txt`;

beforeEach(async () => {
  tmp = await tempDir("pack");
  src = `${tmp.path}/root`;
  // a tree with everything the format must carry
  await mkdir(`${src}/proj/empty`, { recursive: true });
  await mkdir(`${src}/proj/bin`);
  await mkdir(`${src}/proj/ro`);
  await mkdir(`${src}/proj/${LONG.slice(0, LONG.lastIndexOf("/"))}`, { recursive: true });
  await writeFile(`${src}/proj/${LONG}`, "long name");
  await writeFile(`${src}/proj/bin/tool`, "#!/bin/sh\n", { mode: 0o755 });
  await writeFile(`${src}/proj/ro/file`, "read only");
  await chmod(`${src}/proj/ro/file`, 0o444);
  await chmod(`${src}/proj/ro`, 0o555);
  await writeFile(`${src}/proj/ünïcødé.txt`, "ü");
  await writeFile(`${src}/proj/a.txt`, "a");
  await symlink("a.txt", `${src}/proj/rel`);
  await symlink("/etc/passwd", `${src}/proj/abs`);
  await symlink("missing", `${src}/proj/dangling`);
  const big = new Uint8Array(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
  await writeFile(`${src}/proj/big.bin`, big);
  await writeFile(`${src}/top.txt`, "top");
  for (const p of ["proj/a.txt", "proj/big.bin", "proj/empty", "proj/bin", "proj"]) {
    await utimes(`${src}/${p}`, 1_400_000_000, 1_400_000_000 + p.length);
  }
});

afterEach(() => tmp.cleanup());

async function names(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readTar(stream)) out.push(e.path);
  return out;
}

describe("packTree", () => {
  test("pack → unpack reproduces the tree (symlinks, modes, empty dirs, long names, mtimes)", async () => {
    const dest = `${tmp.path}/dest`;
    await mkdir(dest);
    // through odd chunk boundaries, as a transport would deliver it
    const bytes = await collect(packTree(src, "proj"));
    await unpackTar(chunked(bytes, 777), dest);
    expect(await snapshotTree(`${dest}/proj`, { mtimes: true, dirMtimes: true })).toEqual(
      await snapshotTree(`${src}/proj`, { mtimes: true, dirMtimes: true }),
    );
  });

  test("archive names: a file → its basename, a directory → dir/..., the root → children", async () => {
    expect(await names(packTree(src, "proj/a.txt"))).toEqual(["a.txt"]);
    expect(await names(packTree(src, "proj/rel"))).toEqual(["rel"]);
    const dirNames = await names(packTree(src, "proj"));
    expect(dirNames[0]).toBe("proj/");
    expect(dirNames).toContain(`proj/${LONG}`);
    expect(dirNames.every((n) => n.startsWith("proj/"))).toBe(true);
    const rootNames = await names(packTree(src, ""));
    expect(rootNames[0]).toBe("proj/");
    expect(rootNames.at(-1)).toBe("top.txt");
    expect(await names(packTree(src, "."))).toEqual(rootNames);
  });

  test("exclude skips paths (relative to root) and their subtrees; symlinks are never followed", async () => {
    await symlink(tmp.path, `${src}/proj/escape`); // would loop/escape if followed
    const got = await names(
      packTree(src, "proj", { exclude: (rel) => rel === "proj/bin" || rel.endsWith(".bin") }),
    );
    expect(got.some((n) => n.startsWith("proj/bin"))).toBe(false);
    expect(got).not.toContain("proj/big.bin");
    expect(got).toContain("proj/escape");
    expect(got.filter((n) => n.startsWith("proj/escape/"))).toEqual([]);
  });

  test("lazy: creating the stream touches nothing; errors surface on read; cancel stops it", async () => {
    const missing = packTree(src, "nope"); // no throw: nothing has been looked at yet
    await rejectsWith(missing.getReader().read(), "FILE_NOT_FOUND");
    const stream = packTree(src, "proj");
    const reader = stream.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    await reader.cancel();
  });

  test("errors: missing path, escaping rel", async () => {
    await rejectsWith(collect(packTree(src, "nope")), "FILE_NOT_FOUND");
    await rejectsWith(collect(packTree(src, "../x")), "PATH_OUTSIDE_WORKSPACE");
    const err = await rejectsWith(
      collect(packTree(src, "nope", { shownRoot: "/workspace" })),
      "FILE_NOT_FOUND",
    );
    expect(err.message).toContain("/workspace/nope");
    expect(err.message).not.toContain(tmp.path);
  });
});

needs("tar").describe("GNU tar reads what packTree writes", () => {
  test("tar -t lists it and tar -x extracts the same tree", async () => {
    const bytes = await collect(packTree(src, "proj"));
    const listing = new TextDecoder()
      .decode(run(["tar", "-tf", "-"], { stdin: bytes }))
      .trim()
      .split("\n");
    expect(listing).toEqual(await names(packTree(src, "proj")));
    const verbose = new TextDecoder().decode(run(["tar", "-tvf", "-"], { stdin: bytes }));
    expect(verbose).toContain("proj/rel -> a.txt");
    expect(verbose).toMatch(/^-rwxr-xr-x .* proj\/bin\/tool$/m);
    expect(verbose).toMatch(/^dr-xr-xr-x .* proj\/ro\/$/m);
    const out = `${tmp.path}/gnu-out`;
    await mkdir(out);
    run(["tar", "-xpf", "-", "-C", out], { stdin: bytes });
    expect(await snapshotTree(`${out}/proj`, { mtimes: true, dirMtimes: true })).toEqual(
      await snapshotTree(`${src}/proj`, { mtimes: true, dirMtimes: true }),
    );
  });

  test("gzip of a packTree archive round-trips through tar -xz", async () => {
    const gz = Bun.gzipSync(await collect(packTree(src, "")));
    const out = `${tmp.path}/gz-out`;
    await mkdir(out);
    run(["tar", "-xzpf", "-", "-C", out], { stdin: gz });
    expect(await snapshotTree(out)).toEqual(await snapshotTree(src));
  });
});
