import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { fstatSync, readdirSync, readFileSync, readSync } from "node:fs";
import { mkdir, realpath, rename, symlink, writeFile } from "node:fs/promises";
import { tempDir } from "./archive/testutil.ts";
import {
  AT_FDCWD,
  AT_REMOVEDIR,
  closeFd,
  fdPath,
  mkdirat,
  O,
  openat,
  readlinkat,
  renameat,
  unlinkat,
} from "./openat.ts";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let base: string;
const fds: number[] = [];
const open = (dir: number, name: string, flags: number, mode = 0) => {
  const fd = openat(dir, name, flags, mode);
  fds.push(fd);
  return fd;
};

beforeEach(async () => {
  tmp = await tempDir("openat");
  base = await realpath(tmp.path);
  await mkdir(`${base}/d`);
  await mkdir(`${base}/outside`);
  await writeFile(`${base}/d/f`, "inside");
  await writeFile(`${base}/outside/f`, "outside");
  await symlink("../outside", `${base}/d/link`);
});
afterEach(async () => {
  for (const fd of fds.splice(0)) closeFd(fd);
  await tmp.cleanup();
});

function errOf(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
  throw new Error("expected a failure");
}

describe("openat primitive", () => {
  test("O_PATH|O_NOFOLLOW opens a symlink itself; readlinkat reads it from its fd", () => {
    const d = open(AT_FDCWD, `${base}/d`, O.PATH | O.DIRECTORY);
    expect(fstatSync(d).isDirectory()).toBe(true);
    const l = open(d, "link", O.PATH | O.NOFOLLOW);
    expect(fstatSync(l).isSymbolicLink()).toBe(true);
    expect(readlinkat(l, "")).toBe("../outside");
    expect(readlinkat(d, "link")).toBe("../outside");
  });

  test("O_NOFOLLOW refuses to go through a symlink, with errno codes and no path in the message", () => {
    const d = open(AT_FDCWD, `${base}/d`, O.PATH | O.DIRECTORY);
    const e = errOf(() => open(d, "link", O.PATH | O.NOFOLLOW | O.DIRECTORY));
    expect(["ENOTDIR", "ELOOP"]).toContain(e.code!);
    expect(errOf(() => open(d, "link", O.RDONLY | O.NOFOLLOW)).code).toBe("ELOOP");
    expect(errOf(() => open(d, "missing", O.PATH)).code).toBe("ENOENT");
    expect(errOf(() => open(d, "a\0b", O.PATH)).code).toBe("EINVAL");
    expect(errOf(() => mkdirat(d, "f", 0o755)).code).toBe("EEXIST");
    expect(errOf(() => open(d, "missing", O.PATH)).message).not.toContain(base);
  });

  test("operations stay on the directory the fd holds, even after it is swapped for a symlink", async () => {
    const d = open(AT_FDCWD, `${base}/d`, O.PATH | O.DIRECTORY);
    // the attack: the directory moves away and a link to outside takes its name
    await rename(`${base}/d`, `${base}/moved`);
    await symlink(`${base}/outside`, `${base}/d`);

    const f = open(d, "f", O.RDONLY | O.NOFOLLOW);
    const buf = Buffer.alloc(16);
    expect(buf.subarray(0, readSync(f, buf)).toString()).toBe("inside");
    mkdirat(d, "sub", 0o755);
    const tmpFd = open(d, "new.tmp", O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
    closeFd(tmpFd);
    renameat(d, "new.tmp", d, "new");
    unlinkat(d, "f");
    unlinkat(d, "sub", AT_REMOVEDIR);
    expect(readdirSync(fdPath(d)).sort()).toEqual(["link", "new"]);
    expect(readdirSync(`${base}/moved`).sort()).toEqual(["link", "new"]);
    expect(readdirSync(`${base}/outside`)).toEqual(["f"]);
    expect(readFileSync(`${base}/outside/f`, "utf8")).toBe("outside");
  });

  test("O_CREAT|O_EXCL|O_NOFOLLOW never opens an existing file or link", () => {
    const d = open(AT_FDCWD, `${base}/d`, O.PATH | O.DIRECTORY);
    expect(errOf(() => open(d, "f", O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600)).code).toBe("EEXIST");
    expect(errOf(() => open(d, "link", O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600)).code).toBe("EEXIST");
  });
});
