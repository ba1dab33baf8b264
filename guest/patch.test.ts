/**
 * patch.apply on temp directories: parsing git and diff -u output, the checks that run
 * before anything is written, all-or-nothing writing and path confinement.
 */
import { afterEach, describe, expect, test } from "bun:test";
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { rejection } from "../src/protocol/testing.ts";
import { needs } from "../test/capabilities.ts";
import { blobOid } from "./baseline.ts";
import { applyHunks, applyPatch, PATCH_MAX_BYTES, parsePatch, testHooks } from "./patch.ts";
import { scratch, treeHash, writeTree } from "./testing.ts";

const { tempDir } = scratch("pyro-patch");
afterEach(() => {
  testHooks.failRenameOf = undefined;
});

/** A workspace with the given files (see writeTree). */
function workspace(files: Parameters<typeof writeTree>[1]): string {
  const root = tempDir();
  writeTree(root, files);
  return root;
}

const read = (root: string, p: string) => readFileSync(join(root, p), "utf8");

function run(cmd: string[], cwd: string, input?: string): string {
  const r = Bun.spawnSync(cmd, {
    cwd,
    stdin: input === undefined ? "ignore" : new TextEncoder().encode(input),
  });
  if (r.exitCode !== 0 && !(cmd[0] === "diff" && r.exitCode === 1)) {
    throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()}`);
  }
  return r.stdout.toString();
}

const lines = (n: number, tag = "line") => Array.from({ length: n }, (_, i) => `${tag} ${i + 1}\n`).join("");

describe("multi-file git patches", () => {
  test("add, modify, delete and rename in one patch", async () => {
    const root = workspace({
      "src/a.py": "def a():\n    return 1\n\n\ndef b():\n    return 2\n",
      "old.txt": "bye\n",
      "docs/name.md": "# Title\n\nsame text\n",
    });
    const patch = `diff --git a/src/a.py b/src/a.py
index 1111111..2222222 100644
--- a/src/a.py
+++ b/src/a.py
@@ -1,6 +1,6 @@
 def a():
-    return 1
+    return 10
 
 
 def b():
     return 2
diff --git a/new/file.txt b/new/file.txt
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/new/file.txt
@@ -0,0 +1,2 @@
+hello
+world
diff --git a/old.txt b/old.txt
deleted file mode 100644
index 4444444..0000000
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/docs/name.md b/docs/renamed.md
similarity index 80%
rename from docs/name.md
rename to docs/renamed.md
index 5555555..6666666 100644
--- a/docs/name.md
+++ b/docs/renamed.md
@@ -1,3 +1,3 @@
-# Title
+# New title
 
 same text
`;
    const r = await applyPatch(root, patch);
    expect(r).toEqual({
      files: [
        { path: "src/a.py", status: "modified" },
        { path: "new/file.txt", status: "added" },
        { path: "old.txt", status: "deleted" },
        { path: "docs/renamed.md", status: "renamed", from: "docs/name.md" },
      ],
      hunks_applied: 4,
      files_truncated: false,
    });
    expect(read(root, "src/a.py")).toBe("def a():\n    return 10\n\n\ndef b():\n    return 2\n");
    expect(read(root, "new/file.txt")).toBe("hello\nworld\n");
    expect(existsSync(join(root, "old.txt"))).toBe(false);
    expect(existsSync(join(root, "docs/name.md"))).toBe(false);
    expect(read(root, "docs/renamed.md")).toBe("# New title\n\nsame text\n");
    // no temp or backup files left behind
    expect(readdirSync(root).sort()).toEqual(["docs", "new", "src"]);
    expect(readdirSync(join(root, "docs"))).toEqual(["renamed.md"]);
  });

  test("pure rename without hunks, and a directory emptied by a deletion goes away", async () => {
    const root = workspace({ "a/b/only.txt": "x\n", "keep/f.txt": "y\n" });
    const r = await applyPatch(
      root,
      `diff --git a/keep/f.txt b/moved/g.txt
similarity index 100%
rename from keep/f.txt
rename to moved/g.txt
diff --git a/a/b/only.txt b/a/b/only.txt
deleted file mode 100644
index 587be6b..0000000
--- a/a/b/only.txt
+++ /dev/null
@@ -1 +0,0 @@
-x
`,
    );
    expect(r.files).toEqual([
      { path: "moved/g.txt", status: "renamed", from: "keep/f.txt" },
      { path: "a/b/only.txt", status: "deleted" },
    ]);
    expect(read(root, "moved/g.txt")).toBe("y\n");
    expect(readdirSync(root).sort()).toEqual(["moved"]);
  });

  test("empty files can be added and deleted (git sections without hunks)", async () => {
    const root = workspace({ "gone.txt": "" });
    const r = await applyPatch(
      root,
      `diff --git a/empty.txt b/empty.txt
new file mode 100644
index 0000000..e69de29
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index e69de29..0000000
`,
    );
    expect(r.files).toEqual([
      { path: "empty.txt", status: "added" },
      { path: "gone.txt", status: "deleted" },
    ]);
    expect(read(root, "empty.txt")).toBe("");
    expect(existsSync(join(root, "gone.txt"))).toBe(false);
  });

  test("modes: new executable file, mode change with and without content", async () => {
    const root = workspace({ "run.sh": "echo hi\n", tool: { exec: "#!/bin/sh\n" } });
    await applyPatch(
      root,
      `diff --git a/bin/x b/bin/x
new file mode 100755
--- /dev/null
+++ b/bin/x
@@ -0,0 +1 @@
+#!/bin/sh
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
diff --git a/tool b/tool
old mode 100755
new mode 100644
index 1111111..2222222
--- a/tool
+++ b/tool
@@ -1 +1,2 @@
 #!/bin/sh
+exit 0
`,
    );
    expect(lstatSync(join(root, "bin/x")).mode & 0o777).toBe(0o755);
    expect(lstatSync(join(root, "run.sh")).mode & 0o777).toBe(0o755);
    expect(read(root, "run.sh")).toBe("echo hi\n");
    expect(lstatSync(join(root, "tool")).mode & 0o777).toBe(0o644);
    expect(read(root, "tool")).toBe("#!/bin/sh\nexit 0\n");
  });

  test("symlinks: created, retargeted, and a file turned into a link", async () => {
    const root = workspace({ link: { link: "old-target" }, "f.txt": "plain\n" });
    const r = await applyPatch(
      root,
      `diff --git a/new-link b/new-link
new file mode 120000
index 0000000..1111111
--- /dev/null
+++ b/new-link
@@ -0,0 +1 @@
+f.txt
\\ No newline at end of file
diff --git a/link b/link
index 2222222..3333333 120000
--- a/link
+++ b/link
@@ -1 +1 @@
-old-target
\\ No newline at end of file
+new-target
\\ No newline at end of file
diff --git a/f.txt b/f.txt
deleted file mode 100644
index 4444444..0000000
--- a/f.txt
+++ /dev/null
@@ -1 +0,0 @@
-plain
diff --git a/f.txt b/f.txt
new file mode 120000
index 0000000..5555555
--- /dev/null
+++ b/f.txt
@@ -0,0 +1 @@
+link
\\ No newline at end of file
`,
    );
    expect(readlinkSync(join(root, "new-link"))).toBe("f.txt");
    expect(readlinkSync(join(root, "link"))).toBe("new-target");
    expect(readlinkSync(join(root, "f.txt"))).toBe("link");
    expect(r.files).toEqual([
      { path: "new-link", status: "added" },
      { path: "link", status: "modified" },
      { path: "f.txt", status: "modified" },
    ]);
  });

  test("a final symlink is not patched as if it were the file it points to", async () => {
    const root = workspace({ "real.txt": "a\n", "alias.txt": { link: "real.txt" } });
    const before = treeHash(root);
    const err = await rejection(applyPatch(root, "--- a/alias.txt\n+++ b/alias.txt\n@@ -1 +1 @@\n-a\n+b\n"));
    expect(err.code).toBe("PATCH_REJECTED");
    expect(err.message).toContain("alias.txt: is a symbolic link");
    expect(treeHash(root)).toBe(before);
  });

  test("a directory symlink inside the workspace may be traversed", async () => {
    const root = workspace({ "real/f.txt": "a\n", alias: { link: "real" } });
    await applyPatch(root, "--- a/alias/f.txt\n+++ b/alias/f.txt\n@@ -1 +1 @@\n-a\n+b\n");
    expect(read(root, "real/f.txt")).toBe("b\n");
    expect(readlinkSync(join(root, "alias"))).toBe("real");
  });

  test("quoted names with spaces, tabs and UTF-8", async () => {
    const root = workspace({ "dir with space/tést.txt": "1\n" });
    await applyPatch(
      root,
      `diff --git "a/dir with space/t\\303\\251st.txt" "b/dir with space/t\\303\\251st.txt"
index 1111111..2222222 100644
--- "a/dir with space/t\\303\\251st.txt"
+++ "b/dir with space/t\\303\\251st.txt"
@@ -1 +1 @@
-1
+2
diff --git a/plain name.txt b/plain name.txt
new file mode 100644
--- /dev/null
+++ b/plain name.txt\t
@@ -0,0 +1 @@
+x
diff --git "a/tab\\there" "b/tab\\there"
new file mode 100644
--- /dev/null
+++ "b/tab\\there"
@@ -0,0 +1 @@
+t
`,
    );
    expect(read(root, "dir with space/tést.txt")).toBe("2\n");
    expect(read(root, "plain name.txt")).toBe("x\n");
    expect(read(root, "tab\there")).toBe("t\n");
  });
});

describe("diff -u and content details", () => {
  test("traditional headers with timestamps, names without prefixes", async () => {
    const root = workspace({ "x.txt": "one\ntwo\nthree\n" });
    await applyPatch(
      root,
      `--- x.txt.orig\t2024-01-02 03:04:05.000000000 +0100
+++ x.txt\t2024-01-02 03:04:06.000000000 +0100
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
--- /dev/null\t1970-01-01 00:00:00.000000000 +0000
+++ added.txt\t2024-01-02 03:04:06.000000000 +0100
@@ -0,0 +1 @@
+new
`,
    );
    expect(read(root, "x.txt")).toBe("one\nTWO\nthree\n");
    expect(read(root, "added.txt")).toBe("new\n");
  });

  needs("diff").test("the output of system diff -u -r -N applies", async () => {
    const base = tempDir("base");
    const next = tempDir("next");
    writeFileSync(join(base, "a.txt"), lines(50));
    writeFileSync(join(next, "a.txt"), lines(50).replace("line 10\n", "line ten\n").replace("line 40\n", ""));
    writeFileSync(join(base, "gone.txt"), "bye\n");
    writeFileSync(join(next, "new.txt"), "hi\nno newline");
    // diff -r needs the two trees side by side under one parent named a/ and b/
    const parent = tempDir("pair");
    cpSync(base, join(parent, "a"), { recursive: true });
    cpSync(next, join(parent, "b"), { recursive: true });
    const text = run(["diff", "-u", "-r", "-N", "a", "b"], parent);
    expect(text).toContain("--- a/a.txt");
    await applyPatch(base, text);
    expect(treeHash(base)).toBe(treeHash(join(parent, "b")));
  });

  test("CRLF content stays CRLF", async () => {
    const root = workspace({ "win.txt": "a\r\nb\r\nc\r\n" });
    await applyPatch(root, "--- a/win.txt\n+++ b/win.txt\n@@ -1,3 +1,3 @@\n a\r\n-b\r\n+B\r\n c\r\n");
    expect(read(root, "win.txt")).toBe("a\r\nB\r\nc\r\n");
    // an LF patch does not match CRLF content
    const err = await rejection(
      applyPatch(root, "--- a/win.txt\n+++ b/win.txt\n@@ -1,3 +1,3 @@\n a\n-B\n+b\n c\n"),
    );
    expect(err.code).toBe("PATCH_REJECTED");
  });

  test("no newline at end of file, in both directions", async () => {
    const root = workspace({ "n.txt": "a\nb", "m.txt": "x\ny\n" });
    await applyPatch(
      root,
      `--- a/n.txt
+++ b/n.txt
@@ -1,2 +1,2 @@
 a
-b
\\ No newline at end of file
+b
--- a/m.txt
+++ b/m.txt
@@ -1,2 +1,2 @@
 x
-y
+z
\\ No newline at end of file
`,
    );
    expect(read(root, "n.txt")).toBe("a\nb\n");
    expect(read(root, "m.txt")).toBe("x\nz");
  });

  test("file contents need not be UTF-8: bytes around the hunk are kept", async () => {
    const root = tempDir();
    writeFileSync(join(root, "latin1.txt"), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a, 0x6f, 0x6b, 0x0a]));
    await applyPatch(root, "--- a/latin1.txt\n+++ b/latin1.txt\n@@ -2 +2 @@\n-ok\n+OK\n");
    expect([...readFileSync(join(root, "latin1.txt"))]).toEqual([
      0x63, 0x61, 0x66, 0xe9, 0x0a, 0x4f, 0x4b, 0x0a,
    ]);
  });

  test("text around sections (commit message, signature) is skipped", async () => {
    const root = workspace({ f: "1\n" });
    await applyPatch(
      root,
      `From 1234 Mon Sep 17 00:00:00 2001
Subject: [PATCH] change

---
 f | 2 +-

diff --git a/f b/f
--- a/f
+++ b/f
@@ -1 +1 @@
-1
+2
-- 
2.39.5
`,
    );
    expect(read(root, "f")).toBe("2\n");
  });

  test("/workspace/... names are accepted", async () => {
    const root = workspace({ "w.txt": "1\n" });
    await applyPatch(root, "--- /workspace/w.txt\n+++ /workspace/w.txt\n@@ -1 +1 @@\n-1\n+2\n");
    expect(read(root, "w.txt")).toBe("2\n");
  });
});

describe("hunk placement (fuzz 0, offsets)", () => {
  test("a hunk is found when lines were added above it", async () => {
    const root = workspace({ "f.txt": `${lines(5, "new")}${lines(30)}` });
    const r = await applyPatch(
      root,
      "--- a/f.txt\n+++ b/f.txt\n@@ -9,7 +9,7 @@\n line 9\n line 10\n line 11\n-line 12\n+LINE 12\n line 13\n line 14\n line 15\n@@ -20,3 +20,3 @@\n line 20\n-line 21\n+LINE 21\n line 22\n",
    );
    expect(r.hunks_applied).toBe(2);
    expect(read(root, "f.txt")).toBe(
      `${lines(5, "new")}${lines(30).replace("line 12\n", "LINE 12\n").replace("line 21\n", "LINE 21\n")}`,
    );
  });

  test("one changed context line is enough to reject (no fuzz)", async () => {
    const root = workspace({ "f.txt": lines(10).replace("line 4\n", "line four\n") });
    const err = await rejection(
      applyPatch(
        root,
        "--- a/f.txt\n+++ b/f.txt\n@@ -2,5 +2,5 @@\n line 2\n line 3\n line 4\n-line 5\n+LINE 5\n line 6\n",
      ),
    );
    expect(err.code).toBe("PATCH_REJECTED");
    expect(err.message).toBe("f.txt: hunk 1 does not apply at line 2");
    expect(err.details).toEqual({ path: "f.txt", hunk: 1, line: 2 });
  });

  test("context cut short by the start or end of the file anchors the hunk there", () => {
    const [start] = parsePatch("--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n-a\n+A\n b\n c\n");
    expect(applyHunks("a\nb\nc\nd\n", start!.hunks)).toEqual({ content: "A\nb\nc\nd\n" });
    // the same lines further down do not match: the hunk belongs at line 1
    expect(applyHunks("x\na\nb\nc\n", start!.hunks)).toEqual({ failed: 1 });
    const [end] = parsePatch("--- a/f\n+++ b/f\n@@ -2,3 +2,3 @@\n b\n c\n-d\n+D\n");
    expect(applyHunks("a\nb\nc\nd\n", end!.hunks)).toEqual({ content: "a\nb\nc\nD\n" });
    expect(applyHunks("b\nc\nd\ne\n", end!.hunks)).toEqual({ failed: 1 });
  });

  test("hunks without context (diff -U0) apply only at their stated line", () => {
    const [p] = parsePatch("--- a/f\n+++ b/f\n@@ -2 +2 @@\n-b\n+B\n@@ -3,0 +4 @@\n+inserted\n");
    expect(applyHunks("a\nb\nc\n", p!.hunks)).toEqual({ content: "a\nB\nc\ninserted\n" });
    expect(applyHunks("b\na\nc\n", p!.hunks)).toEqual({ failed: 1 });
  });

  test("hunks apply in order and never overlap", () => {
    const [p] = parsePatch(
      "--- a/f\n+++ b/f\n@@ -5,3 +5,3 @@\n x\n-y\n+Y\n z\n@@ -1,3 +1,3 @@\n x\n-y\n+Y\n z\n",
    );
    // both hunks match "x y z"; there is only one such place after the first one's
    expect(applyHunks("q\nq\nq\nq\nx\ny\nz\nq\n", p!.hunks)).toEqual({ failed: 2 });
  });
});

describe("checked before anything is written", () => {
  test("one bad hunk among good ones changes nothing", async () => {
    const root = workspace({ "a.txt": lines(20), "b.txt": lines(40), "c.txt": "c\n" });
    const before = treeHash(root);
    const err = await rejection(
      applyPatch(
        root,
        `diff --git a/a.txt b/a.txt
--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
-line 1
+LINE 1
 line 2
 line 3
diff --git a/new.txt b/new.txt
new file mode 100644
--- /dev/null
+++ b/new/deep/new.txt
@@ -0,0 +1 @@
+x
diff --git a/b.txt b/b.txt
--- a/b.txt
+++ b/b.txt
@@ -2,3 +2,3 @@
 line 2
-line 3
+LINE 3
 line 4
@@ -14,3 +14,3 @@
 line 14
-line fifteen
+LINE 15
 line 16
diff --git a/c.txt b/c.txt
deleted file mode 100644
--- a/c.txt
+++ /dev/null
@@ -1 +0,0 @@
-c
`,
      ),
    );
    expect(err.code).toBe("PATCH_REJECTED");
    expect(err.message).toBe("b.txt: hunk 2 does not apply at line 14");
    expect(treeHash(root)).toBe(before);
  });

  test("adding a file that exists, deleting or patching one that does not", async () => {
    const root = workspace({ "here.txt": "x\n" });
    const before = treeHash(root);
    const cases: Array<[string, string]> = [
      ["--- /dev/null\n+++ b/here.txt\n@@ -0,0 +1 @@\n+y\n", "here.txt: cannot add, it already exists"],
      ["--- a/none.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n", "none.txt: cannot delete, it does not exist"],
      ["--- a/none.txt\n+++ b/none.txt\n@@ -1 +1 @@\n-x\n+y\n", "none.txt: cannot patch, it does not exist"],
      ["--- a/here.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-other\n", "here.txt: hunk 1 does not apply at line 1"],
      [
        "diff --git a/here.txt b/here.txt\ndeleted file mode 100644\nindex 587be6b..0000000\n",
        "here.txt: cannot delete, it has content the patch does not remove",
      ],
    ];
    for (const [patch, message] of cases) {
      const err = await rejection(applyPatch(root, patch));
      expect(err.code).toBe("PATCH_REJECTED");
      expect(err.message).toBe(message);
    }
    expect(treeHash(root)).toBe(before);
  });

  test("a patch that adds a file where a directory is refused", async () => {
    const root = workspace({ "d/x": "1\n" });
    const err = await rejection(applyPatch(root, "--- /dev/null\n+++ b/d\n@@ -0,0 +1 @@\n+y\n"));
    expect(err.code).toBe("PATCH_REJECTED");
    expect(err.message).toBe("d: is a directory");
    const err2 = await rejection(applyPatch(root, "--- /dev/null\n+++ b/d/x/y\n@@ -0,0 +1 @@\n+y\n"));
    expect(err2.code).toBe("PATCH_REJECTED");
  });

  test("malformed patches, empty patches and oversized patches", async () => {
    const root = workspace({ f: "1\n" });
    const cases: Array<[string, RegExp]> = [
      ["", /no file changes/],
      ["just some text\n", /no file changes/],
      ["@@ -1 +1 @@\n-1\n+2\n", /line 1: a hunk without a file header/],
      ["--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-1\n+2\n", /hunk ends early/],
      ["--- a/f\n+++ b/f\n@@ -1 +1 @@\n-1\n+2\n+3\n", /more lines than its header says|unexpected line/],
      ["--- a/f\n+++ b/f\n@@ -x +1 @@\n", /bad hunk header/],
      ["--- a/f\n+++ b/f\n", /without hunks/],
      ['--- "a/f\n+++ b/f\n@@ -1 +1 @@\n-1\n+2\n', /unterminated quoted name/],
    ];
    for (const [patch, message] of cases) {
      const err = await rejection(applyPatch(root, patch));
      expect(err.code).toBe("PATCH_REJECTED");
      expect(err.message).toMatch(message);
    }
    const big = await rejection(applyPatch(root, "x".repeat(PATCH_MAX_BYTES + 1)));
    expect(big.code).toBe("FILE_TOO_LARGE");
    expect(read(root, "f")).toBe("1\n");
  });

  test("binary sections: refused, except a deletion whose index id matches", async () => {
    const root = workspace({ "bin.dat": "\0\x01\x02", "keep.dat": "\0" });
    const before = treeHash(root);
    const noData = await rejection(
      applyPatch(
        root,
        "diff --git a/keep.dat b/keep.dat\nindex 1111111..2222222 100644\nBinary files a/keep.dat and b/keep.dat differ\n",
      ),
    );
    expect(noData.message).toBe(
      "keep.dat: the patch only says the binary file differs; it carries no content to apply",
    );
    const withData = await rejection(
      applyPatch(
        root,
        "diff --git a/keep.dat b/keep.dat\nindex 1111111..2222222 100644\nGIT binary patch\nliteral 1\nIcmZPo000310RR91\n\nliteral 1\nIcmZPo000310RR91\n\n",
      ),
    );
    expect(withData.message).toBe("keep.dat: binary patches are not supported");
    const wrongId = await rejection(
      applyPatch(
        root,
        "diff --git a/bin.dat b/bin.dat\ndeleted file mode 100644\nindex 1234567..0000000\nBinary files a/bin.dat and /dev/null differ\n",
      ),
    );
    expect(wrongId.message).toBe("bin.dat: cannot delete, its content differs from the patch's");
    expect(treeHash(root)).toBe(before);
    const oid = blobOid(readFileSync(join(root, "bin.dat")));
    await applyPatch(
      root,
      `diff --git a/bin.dat b/bin.dat\ndeleted file mode 100644\nindex ${oid.slice(0, 7)}..0000000\nBinary files a/bin.dat and /dev/null differ\n`,
    );
    expect(existsSync(join(root, "bin.dat"))).toBe(false);
  });
});

describe("paths stay inside /workspace", () => {
  const escapes: Array<[string, string]> = [
    ["../x", "--- /dev/null\n+++ b/../x\n@@ -0,0 +1 @@\n+pwned\n"],
    ["/etc/passwd", "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-root\n+pwned\n"],
    ["a/../../x", "--- /dev/null\n+++ b/a/../../x\n@@ -0,0 +1 @@\n+pwned\n"],
    ["/workspace/../x", "--- /dev/null\n+++ /workspace/../x\n@@ -0,0 +1 @@\n+pwned\n"],
    [
      "rename to ../x",
      "diff --git a/in.txt b/../x\nsimilarity index 100%\nrename from in.txt\nrename to ../x\n",
    ],
  ];
  for (const [what, patch] of escapes) {
    test(`${what} is PATH_OUTSIDE_WORKSPACE and nothing is written`, async () => {
      const parent = tempDir("parent");
      const root = join(parent, "ws");
      mkdirSync(root);
      writeFileSync(join(root, "in.txt"), "x\n");
      const before = treeHash(parent);
      const err = await rejection(
        applyPatch(root, `--- a/in.txt\n+++ b/in.txt\n@@ -1 +1 @@\n-x\n+y\n${patch}`),
      );
      expect(err.code).toBe("PATH_OUTSIDE_WORKSPACE");
      expect(treeHash(parent)).toBe(before);
    });
  }

  test("a path through a symlink leading outside is PATH_OUTSIDE_WORKSPACE", async () => {
    const outside = tempDir("outside");
    writeFileSync(join(outside, "secret.txt"), "secret\n");
    const root = workspace({ "in.txt": "x\n", out: { link: outside }, rel: { link: "../" } });
    const before = treeHash(root);
    const outsideBefore = treeHash(outside);
    for (const patch of [
      "--- a/out/secret.txt\n+++ b/out/secret.txt\n@@ -1 +1 @@\n-secret\n+pwned\n",
      "--- /dev/null\n+++ b/out/new.txt\n@@ -0,0 +1 @@\n+pwned\n",
      "--- /dev/null\n+++ b/rel/new.txt\n@@ -0,0 +1 @@\n+pwned\n",
    ]) {
      const err = await rejection(
        applyPatch(root, `--- a/in.txt\n+++ b/in.txt\n@@ -1 +1 @@\n-x\n+y\n${patch}`),
      );
      expect(err.code).toBe("PATH_OUTSIDE_WORKSPACE");
    }
    expect(treeHash(root)).toBe(before);
    expect(treeHash(outside)).toBe(outsideBefore);
  });
});

describe("all-or-nothing writing", () => {
  test("a rename that fails midway is rolled back from the backups", async () => {
    const root = workspace({ "a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n", "d.txt": "d\n" });
    const before = treeHash(root);
    testHooks.failRenameOf = "c.txt";
    const err = await rejection(
      applyPatch(
        root,
        `--- a/a.txt
+++ b/a.txt
@@ -1 +1 @@
-a
+A
--- a/b.txt
+++ /dev/null
@@ -1 +0,0 @@
-b
--- /dev/null
+++ b/new/dir/e.txt
@@ -0,0 +1 @@
+e
--- a/c.txt
+++ b/c.txt
@@ -1 +1 @@
-c
+C
--- a/d.txt
+++ b/d.txt
@@ -1 +1 @@
-d
+D
`,
      ),
    );
    expect(err.code).toBe("IO_ERROR");
    expect(err.message).toContain("the patch was rolled back");
    expect(treeHash(root)).toBe(before); // no temp files, backups or new directories either
  });

  test("owner-only permissions of a modified file are kept", async () => {
    const root = workspace({ "p.txt": "1\n" });
    chmodSync(join(root, "p.txt"), 0o600);
    await applyPatch(root, "--- a/p.txt\n+++ b/p.txt\n@@ -1 +1 @@\n-1\n+2\n");
    expect(lstatSync(join(root, "p.txt")).mode & 0o777).toBe(0o600);
  });
});

needs("git").describe("against git's own output", () => {
  test("git diff -M (renames, modes, symlinks, quoting, no-newline) applies and reproduces the tree", async () => {
    const repo = tempDir("repo");
    const git = (...args: string[]) =>
      run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.quotePath=true", ...args], repo);
    git("init", "-q", ".");
    writeFileSync(join(repo, "keep.txt"), lines(30));
    writeFileSync(join(repo, "move-me.txt"), lines(20, "moving"));
    writeFileSync(join(repo, "gone.txt"), "bye\n");
    writeFileSync(join(repo, "exec.sh"), "#!/bin/sh\n");
    writeFileSync(join(repo, "tail.txt"), "no newline");
    mkdirSync(join(repo, "sp ace"));
    writeFileSync(join(repo, "sp ace/ü.txt"), "u\n");
    symlinkSync("keep.txt", join(repo, "lnk"));
    git("add", "-A");
    git("commit", "-qm", "base");
    const base = tempDir("base");
    cpSync(repo, base, { recursive: true, verbatimSymlinks: true });
    rmSync(join(base, ".git"), { recursive: true });

    writeFileSync(join(repo, "keep.txt"), lines(30).replace("line 3\n", "LINE 3\n").replace("line 28\n", ""));
    rmSync(join(repo, "move-me.txt"));
    mkdirSync(join(repo, "moved"));
    writeFileSync(
      join(repo, "moved/here.txt"),
      lines(20, "moving").replace("moving 20\n", "moving twenty\n"),
    );
    rmSync(join(repo, "gone.txt"));
    chmodSync(join(repo, "exec.sh"), 0o755);
    writeFileSync(join(repo, "tail.txt"), "no newline\nnow");
    writeFileSync(join(repo, "sp ace/ü.txt"), "ü\n");
    rmSync(join(repo, "lnk"));
    symlinkSync("moved/here.txt", join(repo, "lnk"));
    writeFileSync(join(repo, "brand new.txt"), "fresh\n");
    git("add", "-A");
    const patch = git("diff", "--cached", "-M");
    expect(patch).toContain("rename from move-me.txt");
    expect(patch).toContain('"a/sp ace/\\303\\274.txt"');
    rmSync(join(repo, ".git"), { recursive: true });

    const r = await applyPatch(base, patch);
    expect(r.files.find((f) => f.status === "renamed")).toEqual({
      path: "moved/here.txt",
      status: "renamed",
      from: "move-me.txt",
    });
    expect(treeHash(base, { dirModes: false })).toBe(treeHash(repo, { dirModes: false }));
  });
});
