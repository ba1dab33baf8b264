import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readSync } from "node:fs";
import { mkdir, realpath, rename, symlink, writeFile } from "node:fs/promises";
import { rejectsWith, tempDir } from "../src/protocol/archive/testutil.ts";
import { closeFd, O, openat } from "../src/protocol/openat.ts";
import { displayPath, resolveInRoot, resolvePath, showPath, WORKSPACE_DISPLAY_ROOT } from "./paths.ts";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let root: string;
let outside: string;

beforeAll(async () => {
  tmp = await tempDir("paths");
  const base = await realpath(tmp.path);
  root = `${base}/ws`;
  outside = `${base}/outside`;
  await mkdir(`${root}/sub/deeper`, { recursive: true });
  await mkdir(outside);
  await writeFile(`${root}/file`, "f");
  await writeFile(`${root}/sub/f`, "f");
  await symlink("sub", `${root}/in`);
  await symlink(`${root}/sub`, `${root}/abs-in`);
  await symlink("../outside", `${root}/out`);
  await symlink(outside, `${root}/abs-out`);
  await symlink("b", `${root}/a`);
  await symlink("c", `${root}/b`);
  await symlink("sub/deeper", `${root}/c`);
  await symlink("l2", `${root}/l1`);
  await symlink("l1", `${root}/l2`);
  await symlink("..", `${root}/up`);
  await symlink("..", `${root}/sub/up`);
  await symlink("nowhere", `${root}/dangling`);
  await symlink("../../outside", `${root}/sub/sneaky`);
  await symlink("ws", `${base}/ws-link`);
});
afterAll(() => tmp.cleanup());

const follow = { followFinalSymlink: true };
const nofollow = { followFinalSymlink: false };

describe("resolveInRoot", () => {
  test("/workspace paths and relative paths, normalised", async () => {
    for (const [p, want] of [
      ["/workspace", ""],
      ["/workspace/", ""],
      [".", ""],
      ["/workspace/sub/f", "/sub/f"],
      ["sub/f", "/sub/f"],
      ["./sub//f/", "/sub/f"],
      ["sub/../file", "/file"],
      ["//workspace//sub", "/sub"],
      ["new/dir/file", "/new/dir/file"], // not there yet: appended lexically
      ["new/../file", "/file"],
    ] as const) {
      expect(await resolveInRoot(root, p, nofollow)).toBe(`${root}${want}`);
    }
  });

  test("other absolute paths and .. escapes are PATH_OUTSIDE_WORKSPACE", async () => {
    for (const p of [
      "/",
      "/etc/passwd",
      "/workspacex",
      "/workspace/../etc",
      "..",
      "../ws/file",
      "sub/../../x",
      "sub/../..",
      "new/../../x",
    ]) {
      await rejectsWith(resolveInRoot(root, p, nofollow), "PATH_OUTSIDE_WORKSPACE");
    }
  });

  test("symlinks inside the root are followed, including chains and absolute targets", async () => {
    expect(await resolveInRoot(root, "in/f", nofollow)).toBe(`${root}/sub/f`);
    expect(await resolveInRoot(root, "abs-in/f", nofollow)).toBe(`${root}/sub/f`);
    expect(await resolveInRoot(root, "a", follow)).toBe(`${root}/sub/deeper`);
    expect(await resolveInRoot(root, "sub/up/file", follow)).toBe(`${root}/file`);
    // kernel semantics: ".." after a symlink is taken from where the link led (sub/deeper)
    expect(await resolveInRoot(root, "a/../f", follow)).toBe(`${root}/sub/f`);
    expect(await resolveInRoot(root, "dangling", follow)).toBe(`${root}/nowhere`);
  });

  test("the final symlink is kept when not following", async () => {
    expect(await resolveInRoot(root, "out", nofollow)).toBe(`${root}/out`);
    expect(await resolveInRoot(root, "a", nofollow)).toBe(`${root}/a`);
  });

  test("symlinks leading outside are refused wherever they are", async () => {
    for (const p of ["out/x", "abs-out/x", "up/x", "up/ws/file", "sub/sneaky/x"]) {
      await rejectsWith(resolveInRoot(root, p, nofollow), "PATH_OUTSIDE_WORKSPACE");
    }
    for (const p of ["out", "abs-out", "sub/sneaky", "up"]) {
      await rejectsWith(resolveInRoot(root, p, follow), "PATH_OUTSIDE_WORKSPACE");
    }
  });

  test("loops, files as directories, bad input", async () => {
    await rejectsWith(resolveInRoot(root, "l1", follow), "INVALID_INPUT");
    await rejectsWith(resolveInRoot(root, "file/x", nofollow), "NOT_A_DIRECTORY");
    await rejectsWith(resolveInRoot(root, "", nofollow), "INVALID_INPUT");
    await rejectsWith(resolveInRoot(root, "a\0b", nofollow), "INVALID_INPUT");
  });

  test("a root given through a symlink resolves to real paths", async () => {
    expect(await resolveInRoot(`${root}-link`, "sub/f", nofollow)).toBe(`${root}/sub/f`);
  });

  test("error messages show /workspace paths, never the real root", async () => {
    const err = await rejectsWith(resolveInRoot(root, "out/secret", nofollow), "PATH_OUTSIDE_WORKSPACE");
    expect(err.message).toContain("/workspace/out/secret");
    expect(err.message).not.toContain(tmp.path);
  });
});

describe("resolvePath (fd-held resolution)", () => {
  const openFds = () => readdirSync("/proc/self/fd").length;

  test("holds an fd per existing component; missing ones are created O_NOFOLLOW", async () => {
    const r = await resolvePath(root, "in/new1/new2/file", follow);
    try {
      expect(r.parts).toEqual(["sub", "new1", "new2", "file"]);
      expect(r.fds.length).toBe(2); // root and sub
      expect(r.fd).toBeUndefined();
      const created: string[][] = [];
      r.parentFd(true, created);
      expect(created).toEqual([
        ["sub", "new1"],
        ["sub", "new1", "new2"],
      ]);
      expect(r.fds.length).toBe(4);
    } finally {
      r.close();
    }
    await rejectsWith(
      resolvePath(root, "sub/nope/x", follow).then((r) => {
        try {
          r.parentFd(false);
        } finally {
          r.close();
        }
      }),
      "FILE_NOT_FOUND",
    );
  });

  test("a directory swapped for a symlink after resolution: the held fd still names the checked one", async () => {
    await mkdir(`${root}/swap`);
    await writeFile(`${root}/swap/f`, "inside");
    await writeFile(`${outside}/f`, "outside");
    const r = await resolvePath(root, "swap/f", follow);
    try {
      await rename(`${root}/swap`, `${root}/swap.moved`);
      await symlink(outside, `${root}/swap`);
      const fd = openat(r.parentFd(false), r.name, O.RDONLY | O.NOFOLLOW);
      const buf = Buffer.alloc(16);
      expect(buf.subarray(0, readSync(fd, buf)).toString()).toBe("inside");
      closeFd(fd);
    } finally {
      r.close();
    }
    // resolved again now, the swap is seen and refused
    await rejectsWith(resolvePath(root, "swap/f", follow), "PATH_OUTSIDE_WORKSPACE");
  });

  test("no fd is left open, whether resolution succeeds or fails", async () => {
    const before = openFds();
    const held = await resolvePath(root, "sub/f", follow);
    expect(openFds()).toBe(before + 3); // the probe sees held fds: root, sub, f
    held.close();
    expect(openFds()).toBe(before);
    for (let i = 0; i < 50; i++) {
      for (const [p, o] of [
        ["a/../f", follow],
        ["new/dir/file", nofollow],
        ["out/x", nofollow],
        ["l1", follow],
        ["file/x", nofollow],
        ["up/ws/file", nofollow],
      ] as const) {
        await resolveInRoot(root, p, o).catch(() => {});
      }
    }
    expect(openFds()).toBe(before);
  });
});

describe("displayPath / showPath", () => {
  test("maps real paths under the root to /workspace and refuses others", () => {
    expect(WORKSPACE_DISPLAY_ROOT).toBe("/workspace");
    expect(displayPath(root, root)).toBe("/workspace");
    expect(displayPath(root, `${root}/sub/f`)).toBe("/workspace/sub/f");
    expect(() => displayPath(root, `${root}x/f`)).toThrow();
    expect(() => displayPath(root, outside)).toThrow();
  });

  test("showPath is lexical and quotes what it cannot place", () => {
    expect(showPath("a/../b")).toBe("/workspace/b");
    expect(showPath("/workspace")).toBe("/workspace");
    expect(showPath("/etc/passwd")).toBe('"/etc/passwd"');
    expect(showPath("../x")).toBe('"../x"');
  });
});
