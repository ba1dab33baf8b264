// Layer application on a real temp dir (no guest): whiteouts, opaque dirs, in-scope symlink
// resolution, refusals; and the image init's derivation from the catalog init.
import { afterEach, describe, expect, test } from "bun:test";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TarWriteEntry, writeTar } from "../../protocol/archive/tar.ts";
import { INIT_SCRIPT } from "../build/rootfs.ts";
import { applyLayer, ScopedTree } from "./apply.ts";
import { imageInitScript, isStaticElf } from "./runtime.ts";

const te = new TextEncoder();
const f = (path: string, text: string): TarWriteEntry => ({
  header: { path, type: "file", mode: 0o644, size: te.encode(text).length },
  body: [te.encode(text)],
});
const d = (path: string): TarWriteEntry => ({ header: { path, type: "directory", mode: 0o755 } });
const s = (path: string, target: string): TarWriteEntry => ({
  header: { path, type: "symlink", linkTarget: target },
});
const h = (path: string, target: string): TarWriteEntry => ({
  header: { path, type: "hardlink", linkTarget: target },
});

let dirs: string[] = [];
afterEach(() => {
  for (const p of dirs) rmSync(p, { recursive: true, force: true });
  dirs = [];
});
function tmp(): string {
  const p = mkdtempSync(join(tmpdir(), "pyro-apply-"));
  dirs.push(p);
  return p;
}

async function apply(root: string, ...layers: TarWriteEntry[][]): Promise<void> {
  const tree = new ScopedTree(root);
  try {
    for (const [i, entries] of layers.entries()) await applyLayer(tree, writeTar(entries), String(i + 1));
  } finally {
    tree.close();
  }
}

describe("applyLayer", () => {
  test("whiteouts remove lower files and trees; an opaque dir keeps only its own layer's entries", async () => {
    const root = join(tmp(), "root");
    mkdirSync(root);
    await apply(
      root,
      [
        d("etc"),
        f("etc/keep", "k"),
        f("etc/gone", "g"),
        d("tree"),
        f("tree/x/y", "y"),
        d("opq"),
        f("opq/old", "o"),
      ],
      [f("etc/.wh.gone", ""), f(".wh.tree", ""), f("opq/new", "n"), f("opq/.wh..wh..opq", "")],
    );
    expect(readdirSync(join(root, "etc"))).toEqual(["keep"]);
    expect(existsSync(join(root, "tree"))).toBe(false);
    expect(readdirSync(join(root, "opq"))).toEqual(["new"]); // marker after the entry: still kept
  });

  test("parent symlinks resolve inside the tree, absolute or with ..; the host target stays untouched", async () => {
    const base = tmp();
    const outside = join(base, "outside");
    mkdirSync(outside);
    const root = join(base, "root");
    mkdirSync(root);
    await apply(root, [s("abs", outside), s("rel", "../../.."), f("abs/a", "1"), f("rel/b", "2")]);
    expect(readdirSync(outside)).toEqual([]);
    expect(readFileSync(join(root, outside, "a"), "utf8")).toBe("1");
    expect(readFileSync(join(root, "b"), "utf8")).toBe("2"); // ".." stops at the root
    expect(readlinkSync(join(root, "abs"))).toBe(outside); // the link itself is stored verbatim
  });

  test("a later entry replaces a symlink or a directory instead of following it; hard links share inodes", async () => {
    const base = tmp();
    const root = join(base, "root");
    mkdirSync(root);
    await apply(
      root,
      [f("target", "t"), s("name", "/target"), d("dir"), f("dir/in", "i")],
      [f("name", "replaced"), f("dir", "now a file"), h("twin", "target")],
    );
    expect(lstatSync(join(root, "name")).isFile()).toBe(true);
    expect(readFileSync(join(root, "target"), "utf8")).toBe("t");
    expect(readFileSync(join(root, "dir"), "utf8")).toBe("now a file");
    expect(lstatSync(join(root, "twin")).ino).toBe(lstatSync(join(root, "target")).ino);
  });

  test("names with .., absolute names and hard links out of the tree are refused", async () => {
    const root = tmp();
    for (const bad of [[f("../x", "x")], [f("/abs", "x")], [f("a", "a"), h("b", "../a")]]) {
      const err = await apply(root, bad).catch((e) => e);
      expect(err.code).toBe("INVALID_INPUT");
    }
    // the probe: the same entries without the escape are accepted
    await apply(root, [f("x", "x"), f("a", "a"), h("b", "a")]);
    expect(readFileSync(join(root, "b"), "utf8")).toBe("a");
  });
});

describe("image runtime", () => {
  test("the image init differs from the catalog init only in shebang, PATH and tini", () => {
    const img = imageInitScript();
    expect(img.startsWith("#!/.pyro/bin/sh\n")).toBe(true);
    expect(img).toMatch(/^PATH=\/\.pyro\/bin:\/usr\/local\/sbin/m);
    expect(img).not.toContain("/usr/bin/tini");
    const back = img
      .replace("#!/.pyro/bin/sh\n", "#!/bin/sh\n")
      .replace("PATH=/.pyro/bin:", "PATH=")
      .replaceAll("/.pyro/bin/tini", "/usr/bin/tini");
    expect(back).toBe(INIT_SCRIPT);
    expect(() => imageInitScript("#!/bin/bash\n")).toThrow();
  });

  test("isStaticElf tells busybox-static from a dynamic executable", () => {
    if (existsSync("/bin/busybox")) expect(isStaticElf("/bin/busybox")).toBe(true);
    expect(isStaticElf(process.execPath)).toBe(false);
  });
});
