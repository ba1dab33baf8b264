/**
 * diff against the baseline: what each kind of change looks like, that the patch applies
 * with `git apply` and with our own patch.apply, the incremental stat cache, and the three
 * ops end to end through serveChannel.
 */
import { describe, expect, test } from "bun:test";
import {
  chmodSync,
  cpSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { channelPair } from "../src/protocol/channels.ts";
import { Connection } from "../src/protocol/connection.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { Channel } from "../src/protocol/frame.ts";
import { needs } from "../test/capabilities.ts";
import { BASELINE_GITDIR, captureBaseline } from "./baseline.ts";
import { clearSectionCache, type DiffResult, diffWorkspace } from "./diff.ts";
import { applyPatch } from "./patch.ts";
import { type AgentOptions, serveChannel } from "./server.ts";
import { scratch, treeHash, write } from "./testing.ts";

const { setup, onCleanup } = scratch("pyro-diff");

/** Tests skip the racy-timestamp wait by trusting stat data that is a few ms old. */
const FAST = { racyMarginMs: 0 };
const settle = () => Bun.sleep(25);

const lines = (n: number, tag = "line") => Array.from({ length: n }, (_, i) => `${tag} ${i + 1}\n`).join("");

/** A small project, its baseline captured, and a copy of it as it was. */
async function project(): Promise<{ root: string; state: string; parent: string; copy: string }> {
  const s = setup();
  write(s.root, "README.md", "# Project\n\nSome words.\n");
  write(s.root, "src/app.py", lines(40));
  write(s.root, "src/util.py", "def util():\n    pass\n");
  write(s.root, "src/gone.py", "old = True\n");
  write(s.root, "bin/tool", "#!/bin/sh\necho tool\n", 0o755);
  write(s.root, "bin/plain", "#!/bin/sh\n");
  write(s.root, "data/blob.bin", new Uint8Array([0, 1, 2, 3, 0, 5]));
  write(s.root, "notes/no-newline.txt", "last line");
  write(s.root, "notes/crlf.txt", "a\r\nb\r\nc\r\n");
  write(s.root, "empty.txt", "");
  symlinkSync("src/app.py", join(s.root, "app-link"));
  symlinkSync("README.md", join(s.root, "will-be-file"));
  write(s.root, "will-be-link", "file for now\n");
  await settle(); // nothing written in the same millisecond as the capture starts
  await captureBaseline(s.root, s.state);
  const copy = join(s.parent, "copy");
  cpSync(s.root, copy, { recursive: true, verbatimSymlinks: true });
  return { ...s, copy };
}

/** Text-only edits of every kind (everything git apply can replay). */
function editText(root: string): void {
  write(
    root,
    "src/app.py",
    lines(40).replace("line 3\n", "line three\n").replace("line 30\n", "").concat("tail\n"),
  );
  write(root, "src/new/module.py", "NEW = 1\n");
  rmSync(join(root, "src/gone.py"));
  chmodSync(join(root, "bin/plain"), 0o755); // mode only
  write(root, "bin/tool", "#!/bin/sh\necho changed\n", 0o644); // mode and content
  write(root, "notes/no-newline.txt", "last line\nand more");
  write(root, "notes/crlf.txt", "a\r\nB\r\nc\r\n");
  write(root, "empty.txt", "not empty any more\n");
  write(root, "added-empty.txt", "");
  rmSync(join(root, "app-link"));
  symlinkSync("src/util.py", join(root, "app-link")); // link target
  rmSync(join(root, "will-be-file"));
  write(root, "will-be-file", "now a file\n"); // link → file
  rmSync(join(root, "will-be-link"));
  symlinkSync("README.md", join(root, "will-be-link")); // file → link
  write(root, "dir with space/ünï.txt", "quoted\n");
}

async function diff(root: string, state: string, opts = {}): Promise<DiffResult> {
  return diffWorkspace(root, state, { ...FAST, ...opts });
}

describe("diff", () => {
  test("an unchanged workspace gives an empty diff, and the second time reads nothing", async () => {
    const { root, state } = await project();
    await settle();
    const first = await diff(root, state);
    expect(first).toMatchObject({
      patch: "",
      files: [],
      summary: { files_changed: 0, additions: 0, deletions: 0, binary_files: 0 },
      truncated: false,
      files_truncated: false,
    });
    const second = await diff(root, state);
    expect(second.patch).toBe("");
    expect(second.files_hashed).toBe(0);
  });

  test("each kind of change has its entry", async () => {
    const { root, state } = await project();
    editText(root);
    write(root, "data/blob.bin", new Uint8Array([0, 9, 9]));
    write(root, "data/latin1.txt", new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    const r = await diff(root, state);
    const by = Object.fromEntries(r.files.map((f) => [f.path, f]));
    expect(by["src/app.py"]).toEqual({
      path: "src/app.py",
      status: "modified",
      binary: false,
      old_mode: "100644",
      new_mode: "100644",
      additions: 2,
      deletions: 2,
    });
    expect(by["src/new/module.py"]).toMatchObject({ status: "added", new_mode: "100644", additions: 1 });
    expect(by["src/gone.py"]).toMatchObject({ status: "deleted", old_mode: "100644", deletions: 1 });
    expect(by["bin/plain"]).toEqual({
      path: "bin/plain",
      status: "mode_changed",
      binary: false,
      old_mode: "100644",
      new_mode: "100755",
      additions: 0,
      deletions: 0,
    });
    expect(by["bin/tool"]).toMatchObject({ status: "modified", old_mode: "100755", new_mode: "100644" });
    expect(by["app-link"]).toMatchObject({ status: "modified", binary: false, old_mode: "120000" });
    expect(by["will-be-file"]).toMatchObject({
      status: "type_changed",
      old_mode: "120000",
      new_mode: "100644",
    });
    expect(by["will-be-link"]).toMatchObject({
      status: "type_changed",
      old_mode: "100644",
      new_mode: "120000",
    });
    expect(by["data/blob.bin"]).toMatchObject({
      status: "modified",
      binary: true,
      additions: 0,
      deletions: 0,
    });
    expect(by["data/latin1.txt"]).toMatchObject({ status: "added", binary: true });
    expect(by["added-empty.txt"]).toMatchObject({ status: "added", binary: false, additions: 0 });
    expect(r.summary.files_changed).toBe(r.files.length);
    expect(r.summary.binary_files).toBe(2);
    expect(r.summary.additions).toBe(r.files.reduce((n, f) => n + f.additions, 0));
    // git's order: byte order of the path
    const paths = r.files.map((f) => f.path);
    expect(paths).toEqual([...paths].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));

    expect(r.patch).toContain(
      "diff --git a/bin/plain b/bin/plain\nold mode 100644\nnew mode 100755\ndiff --git a/bin/tool b/bin/tool\nold mode 100755\nnew mode 100644\nindex ",
    );
    expect(r.patch).toMatch(
      /diff --git a\/data\/blob.bin b\/data\/blob.bin\nindex [0-9a-f]{40}\.\.[0-9a-f]{40} 100644\nBinary files a\/data\/blob.bin and b\/data\/blob.bin differ\n/,
    );
    expect(r.patch).toContain("Binary files /dev/null and b/data/latin1.txt differ\n");
    expect(r.patch).toContain(
      "-src/app.py\n\\ No newline at end of file\n+src/util.py\n\\ No newline at end of file\n",
    );
    expect(r.patch).toContain(" a\r\n-b\r\n+B\r\n c\r\n");
    expect(r.patch).toContain(
      'diff --git "a/dir with space/\\303\\274n\\303\\257.txt" "b/dir with space/\\303\\274n\\303\\257.txt"',
    );
    expect(r.patch).toContain(
      "diff --git a/added-empty.txt b/added-empty.txt\nnew file mode 100644\nindex 0000000000000000000000000000000000000000..e69de29bb2d1d6434b8b29ae775ad8c2e48c5391\ndiff",
    );
  });

  needs("git").test("the patch applies with git apply and reproduces the tree", async () => {
    const { root, state, copy } = await project();
    editText(root);
    const r = await diff(root, state);
    const apply = Bun.spawnSync(["git", "apply", "--whitespace=nowarn", "-"], {
      cwd: copy,
      stdin: new TextEncoder().encode(r.patch),
      env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1" },
    });
    expect(apply.stderr.toString()).toBe("");
    expect(apply.exitCode).toBe(0);
    expect(treeHash(copy, { asGit: true })).toBe(treeHash(root, { asGit: true }));
    // and the baseline's index is still one git can use
    const status = Bun.spawnSync(
      ["git", `--git-dir=${join(state, BASELINE_GITDIR)}`, `--work-tree=${root}`, "status", "--porcelain"],
      { cwd: root },
    );
    expect(status.stdout.toString()).toContain(" M src/app.py");
  });

  test("the patch applies with our own patch.apply and reproduces the tree", async () => {
    const { root, state, copy } = await project();
    editText(root);
    const r = await diff(root, state);
    const applied = await applyPatch(copy, r.patch);
    expect(applied.files.length).toBe(r.files.length);
    expect(treeHash(copy, { asGit: true })).toBe(treeHash(root, { asGit: true }));
  });

  test("incremental: only what changed since the last diff is read", async () => {
    const { root, state } = await project();
    await settle();
    expect((await diff(root, state)).files_hashed).toBe(0); // the baseline's stat data holds
    write(root, "src/util.py", "def util():\n    return 1\n");
    write(root, "fresh.txt", "fresh\n");
    await settle();
    clearSectionCache(); // as after an agent restart
    const first = await diff(root, state);
    expect(first.files_hashed).toBe(2);
    const second = await diff(root, state);
    expect(second.files_hashed).toBe(0);
    expect(second.patch).toBe(first.patch);
    expect(second.files).toEqual(first.files);
    // after a restart (rendered sections forgotten) only the changed files are read again
    clearSectionCache();
    const third = await diff(root, state);
    expect(third.files_hashed).toBe(2);
    expect(third.patch).toBe(first.patch);
    // touching a file without changing it costs one read, then nothing
    const now = Date.now() / 1000 - 5;
    utimesSync(join(root, "README.md"), now, now);
    await settle();
    expect((await diff(root, state)).files_hashed).toBe(1);
    expect((await diff(root, state)).files_hashed).toBe(0);
    // changing a file back to its baseline content makes it disappear from the diff
    write(root, "src/util.py", "def util():\n    pass\n");
    await settle();
    const back = await diff(root, state);
    expect(back.files.map((f) => f.path)).toEqual(["fresh.txt"]);
  });

  test("a content change that keeps size and mtime is still seen (ctime)", async () => {
    const { root, state } = await project();
    await settle();
    await diff(root, state);
    const p = join(root, "src/util.py");
    const st = lstatSync(p);
    writeFileSync(p, "def UTIL():\n    pass\n"); // same size
    utimesSync(p, st.atime, st.mtime); // same mtime
    await settle();
    const r = await diff(root, state);
    expect(r.files.map((f) => f.path)).toEqual(["src/util.py"]);
  });

  test("recent stat data is not trusted (racy files are hashed again)", async () => {
    const { root, state } = await project();
    // with the default margin nothing written within the last second is trusted
    const r1 = await diffWorkspace(root, state);
    expect(r1.files_hashed).toBeGreaterThan(0);
    expect(r1.patch).toBe("");
  });

  test("max_bytes keeps whole file sections only", async () => {
    const { root, state } = await project();
    write(root, "a.txt", lines(10));
    write(root, "b.txt", lines(10));
    const full = await diff(root, state);
    const firstSection = full.patch.slice(0, full.patch.indexOf("diff --git a/b.txt"));
    const cut = await diff(root, state, { maxBytes: firstSection.length + 10 });
    expect(cut.truncated).toBe(true);
    expect(cut.patch).toBe(firstSection);
    expect(cut.files.length).toBe(2); // the list and summary still count everything
    expect(cut.summary.files_changed).toBe(2);
    const none = await diff(root, state, { maxBytes: 0 });
    expect(none).toMatchObject({ patch: "", truncated: true });
    await expect(diff(root, state, { maxBytes: -1 })).rejects.toThrow(PyroError);
  });

  test("large files are summarised as binary; long edit scripts still give a correct patch", async () => {
    const { root, state, copy } = await project();
    write(root, "big.txt", "x\n".repeat(5 * 1024 * 1024));
    const many = Array.from({ length: 12000 }, (_, i) => `${i % 3 === 0 ? "changed" : "kept"} ${i}\n`).join(
      "",
    );
    write(root, "src/app.py", many);
    const r = await diff(root, state);
    expect(r.files.find((f) => f.path === "big.txt")).toMatchObject({ status: "added", binary: true });
    rmSync(join(root, "big.txt"));
    const text = await diff(root, state);
    await applyPatch(copy, text.patch);
    expect(readFileSync(join(copy, "src/app.py"), "utf8")).toBe(many);
  });

  test("no baseline captured: the baseline is the empty tree (an unseeded workspace)", async () => {
    const { root, state } = setup();
    expect((await diff(root, state)).files).toEqual([]);
    write(root, "new.txt", "hello\n");
    const d = await diff(root, state);
    expect(d.files.map((f) => [f.path, f.status])).toEqual([["new.txt", "added"]]);
    expect(d.patch).toContain("+hello");
  });

  test("a damaged cache only costs time", async () => {
    const { root, state } = await project();
    write(root, "x.txt", "x\n");
    await settle();
    const before = await diff(root, state);
    writeFileSync(join(state, "diff-cache.idx"), "garbage");
    clearSectionCache();
    const after = await diff(root, state);
    expect(after.patch).toBe(before.patch);
  });
});

describe("through serveChannel", () => {
  function agent(withState = true) {
    const { root, state } = setup();
    const opts: AgentOptions = {
      root,
      guest: false,
      baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      stateDir: withState ? state : undefined,
    };
    const [serverSide, clientSide] = channelPair();
    serveChannel(opts, serverSide);
    const client = new Connection(clientSide);
    onCleanup(() => client.close());
    return { root, state, client };
  }

  async function call(client: Connection, req: Record<string, unknown>, input?: Uint8Array) {
    const s = client.open(req);
    const out: Uint8Array[] = [];
    const pump = (async () => {
      for await (const e of s.events)
        if (e.kind === "data" && e.channel === Channel.STDOUT) out.push(e.bytes);
    })();
    if (input) {
      s.sendData(input);
      s.endInput();
    }
    const result = await s.done;
    await pump;
    return { result, out: Buffer.concat(out).toString("utf8") };
  }

  test("baseline.capture, patch.apply (inline and streamed), diff", async () => {
    const { root, client } = agent();
    write(root, "a.txt", "one\ntwo\n");
    const cap = await call(client, { op: "baseline.capture" });
    expect(cap.result).toMatchObject({ files: 1 });
    expect(cap.result.tree).toMatch(/^[0-9a-f]{40}$/);

    const inline = await call(client, {
      op: "patch.apply",
      patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n",
    });
    expect(inline.result).toEqual({
      files: [{ path: "a.txt", status: "modified" }],
      hunks_applied: 1,
      files_truncated: false,
    });
    const streamed = await call(
      client,
      { op: "patch.apply" },
      new TextEncoder().encode("--- /dev/null\n+++ b/b.txt\n@@ -0,0 +1 @@\n+bee\n"),
    );
    expect(streamed.result).toMatchObject({ files: [{ path: "b.txt", status: "added" }] });

    const d = await call(client, { op: "diff" });
    expect(d.out).toContain("diff --git a/a.txt b/a.txt\n");
    expect(d.out).toContain("+TWO\n");
    expect(d.out).toContain("diff --git a/b.txt b/b.txt\nnew file mode 100644\n");
    expect(Object.keys(d.result).sort()).toEqual(
      ["files", "files_hashed", "files_truncated", "patch_bytes", "summary", "truncated"].sort(),
    );
    expect(d.result).toMatchObject({
      patch_bytes: Buffer.byteLength(d.out),
      summary: { files_changed: 2, additions: 2, deletions: 1, binary_files: 0 },
      truncated: false,
    });
    expect((d.result.files as { path: string }[]).map((f) => f.path)).toEqual(["a.txt", "b.txt"]);

    // past the racy window, an unchanged workspace is diffed without reading any file
    await Bun.sleep(1100);
    await call(client, { op: "diff" });
    const again = await call(client, { op: "diff" });
    expect(again.result.files_hashed).toBe(0);
    expect(again.out).toBe(d.out);
  });

  test("errors cross the wire with their codes", async () => {
    const { root, client } = agent();
    write(root, "a.txt", "x\n");
    const bad = await call(client, {
      op: "patch.apply",
      patch: "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-y\n+z\n",
    }).catch((e) => e);
    expect(bad).toBeInstanceOf(PyroError);
    expect(bad.code).toBe("PATCH_REJECTED");
    expect(bad.message).toBe("a.txt: hunk 1 does not apply at line 1");
    const out = await call(client, {
      op: "patch.apply",
      patch: "--- /dev/null\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n",
    }).catch((e) => e);
    expect(out.code).toBe("PATH_OUTSIDE_WORKSPACE");
    const badReq = await call(client, { op: "diff", max_bytes: -1 }).catch((e) => e);
    expect(badReq.code).toBe("INVALID_INPUT");
  });

  test("an agent without a state dir refuses baseline and diff", async () => {
    const { client } = agent(false);
    for (const op of ["baseline.capture", "diff"]) {
      const err = await call(client, { op }).catch((e) => e);
      expect(err.code).toBe("INVALID_INPUT");
      expect(err.message).toContain("--state");
    }
  });
});

test(".git directories are neither in the baseline nor in the diff (as git does)", async () => {
  const { root, state } = setup();
  mkdirSync(join(root, ".git", "objects"), { recursive: true });
  writeFileSync(join(root, ".git", "HEAD"), "ref: refs/heads/main\n");
  writeFileSync(join(root, "a.txt"), "a\n");
  await captureBaseline(root, state);
  writeFileSync(join(root, ".git", "objects", "new"), "x");
  writeFileSync(join(root, "a.txt"), "b\n");
  const d = await diffWorkspace(root, state, {});
  expect(d.files.map((f: { path: string }) => f.path)).toEqual(["a.txt"]);
});
