import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import {
  copyFileSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { needs } from "../../../test/capabilities.ts";
import { PyroError } from "../../protocol/errors.ts";
import { findTool } from "./debugfs.ts";
import { exportDisk, listDisk, readDisk, statDisk } from "./index.ts";

/** Whiteouts and device nodes need mknod. */
const root = needs("root");
const isRoot = root.ok;

let dir: string;
let img: string;
let emptyImg: string;
let imgSha: string;
const bBin = randomBytes(100_000);
const secret = randomBytes(1 << 20); // a file in /tmp that must not survive an export
const MTIME = new Date("2020-01-02T03:04:05.000Z");
const SLOW_LINK = `${"./".repeat(40)}sub/b.bin`; // > 60 bytes: stored in a data block

function sh(argv: string[]) {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

function mkfs(image: string, staging?: string) {
  sh(["truncate", "-s", "64M", image]);
  sh([findTool("mkfs.ext4"), "-q", "-F", "-L", "pyro-data", ...(staging ? ["-d", staging] : []), image]);
}

const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof PyroError) return err.code;
    throw err;
  }
  return "OK";
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "pyro-disk-test-"));
  const st = join(dir, "staging");
  const ws = join(st, "upper/workspace");
  mkdirSync(join(ws, "sub"), { recursive: true });
  mkdirSync(join(ws, "deep/er/est"), { recursive: true });
  mkdirSync(join(ws, "emptydir"));
  writeFileSync(join(ws, "a.txt"), "hello\n");
  utimesSync(join(ws, "a.txt"), MTIME, MTIME);
  writeFileSync(join(ws, "sub/b.bin"), bBin);
  writeFileSync(join(ws, "deep/er/est/leaf.txt"), "leaf");
  symlinkSync("a.txt", join(ws, "link"));
  symlinkSync("/etc/passwd", join(ws, "escape"));
  symlinkSync("/workspace/a.txt", join(ws, "abs"));
  symlinkSync("../../etc/shadow", join(ws, "up"));
  symlinkSync("sub", join(ws, "dirlink"));
  symlinkSync("loop2", join(ws, "loop1"));
  symlinkSync("loop1", join(ws, "loop2"));
  symlinkSync(SLOW_LINK, join(ws, "slowlink"));
  writeFileSync(join(ws, "name with spaces.txt"), "spaces");
  writeFileSync(join(ws, "ünïcödé.txt"), "unicode ✓");
  writeFileSync(join(ws, "new\nline"), "nl");
  writeFileSync(join(ws, 'quo"te\\back'), "q");
  writeFileSync(join(ws, "<12>"), "angle");
  writeFileSync(join(ws, "x>"), "gt");
  writeFileSync(join(ws, "debugfs: ls -p <2>"), "echo-like");
  sh(["mkfifo", join(ws, "fifo")]);
  sh(["truncate", "-s", "4G", join(ws, "huge-sparse")]);
  if (isRoot) {
    sh(["mknod", join(ws, "gone"), "c", "0", "0"]); // overlay whiteout
    sh(["mknod", join(ws, "devnull"), "c", "1", "3"]); // a real device node
  }

  // runtime-only state
  const run = join(st, "upper/run");
  mkdirSync(join(run, "sub\ndir/inner"), { recursive: true });
  writeFileSync(join(run, "x"), "runtime");
  writeFileSync(join(run, "weird\nname"), "w");
  writeFileSync(join(run, "sub\ndir/inner/file"), "f");
  for (const n of ['q"uote', "<2>", "y>", "#hash", "!bang", " lead", "tab\there", "cr\rname"]) {
    writeFileSync(join(run, n), n);
  }
  linkSync(join(ws, "a.txt"), join(run, "hardlink-to-a")); // removing it must keep a.txt
  mkdirSync(join(st, "upper/tmp"), { recursive: true });
  writeFileSync(join(st, "upper/tmp/secret"), secret);
  mkdirSync(join(st, "upper/root"), { recursive: true });
  writeFileSync(join(st, "upper/root/.bash_history"), "ls\n");
  mkdirSync(join(st, "work/work/stale"), { recursive: true });
  writeFileSync(join(st, "work/work/stale/#1"), "copy-up leftover");
  mkdirSync(join(st, "pyro-state/baseline"), { recursive: true });
  writeFileSync(join(st, "pyro-state/baseline/HEAD"), "ref: refs/heads/main\n");

  const sock = Bun.listen({ unix: join(st, "pyro-state/agent.sock"), socket: { data() {} } });
  try {
    img = join(dir, "disk.ext4");
    mkfs(img, st);
  } finally {
    sock.stop(true);
  }
  emptyImg = join(dir, "empty.ext4");
  mkfs(emptyImg);
  imgSha = sha(img);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("listDisk", () => {
  test("top level: types, sizes, modes, mtimes, link targets; whiteouts hidden", async () => {
    const before = sha(img);
    const r = await listDisk(img, "/workspace");
    expect(r.path).toBe("/workspace");
    expect(r.truncated).toBe(false);
    const by = new Map(r.entries.map((e) => [e.path, e]));
    const names = r.entries.map((e) => e.path.slice("/workspace/".length));
    expect(names).toEqual([...names].sort());
    expect(names).toContain("name with spaces.txt");
    expect(names).toContain("ünïcödé.txt");
    expect(names).toContain("new\nline");
    expect(names).toContain('quo"te\\back');
    expect(names).toContain("<12>");
    expect(names).toContain("debugfs: ls -p <2>");
    expect(names).not.toContain("gone");
    expect(names).not.toContain("sub/b.bin"); // not recursive
    expect(by.get("/workspace/a.txt")).toEqual({
      path: "/workspace/a.txt",
      artifact_type: "file",
      size_bytes: 6,
      mode: "0644",
      mtime: MTIME.toISOString(),
    });
    expect(by.get("/workspace/sub")?.artifact_type).toBe("directory");
    expect(by.get("/workspace/link")).toMatchObject({
      artifact_type: "symlink",
      link_target: "a.txt",
      size_bytes: 5,
    });
    expect(by.get("/workspace/escape")?.link_target).toBe("/etc/passwd");
    expect(by.get("/workspace/slowlink")?.link_target).toBe(SLOW_LINK);
    expect(by.get("/workspace/ünïcödé.txt")?.size_bytes).toBe(Buffer.byteLength("unicode ✓"));
    if (isRoot) expect(by.get("/workspace/devnull")?.artifact_type).toBe("other");
    expect(by.get("/workspace/fifo")?.artifact_type).toBe("other");
    expect(by.get("/workspace/huge-sparse")?.size_bytes).toBe(4 * 2 ** 30);
    expect(sha(img)).toBe(before);
  });

  test("recursive: depth-first, sorted, never through symlinks", async () => {
    const r = await listDisk(img, ".", { recursive: true });
    const names = r.entries.map((e) => e.path);
    expect(names).toContain("/workspace/sub/b.bin");
    expect(names).toContain("/workspace/deep/er/est/leaf.txt");
    expect(names.indexOf("/workspace/deep")).toBeLessThan(names.indexOf("/workspace/deep/er"));
    expect(names.indexOf("/workspace/deep/er/est/leaf.txt")).toBeLessThan(
      names.indexOf("/workspace/dirlink"),
    );
    expect(names.some((n) => n.startsWith("/workspace/dirlink/"))).toBe(false);
    expect(names).not.toContain("/workspace/gone");
    expect(r.entries.find((e) => e.path === "/workspace/sub/b.bin")?.size_bytes).toBe(bBin.length);
    expect(r.truncated).toBe(false);

    // truncation keeps the first entries of the same order
    for (const max of [1, 3, 7, names.length - 1]) {
      const t = await listDisk(img, "/workspace", { recursive: true, maxEntries: max });
      expect(t.entries.map((e) => e.path)).toEqual(names.slice(0, max));
      expect(t.truncated).toBe(true);
    }
    const exact = await listDisk(img, "/workspace", { recursive: true, maxEntries: names.length });
    expect(exact.truncated).toBe(false);
    expect(exact.entries.length).toBe(names.length);
  });

  test("paths: symlinked directory, relative forms, errors", async () => {
    const viaLink = await listDisk(img, "dirlink");
    expect(viaLink.path).toBe("/workspace/sub");
    expect(viaLink.entries.map((e) => e.path)).toEqual(["/workspace/sub/b.bin"]);
    expect((await listDisk(img, "./deep//er/../er")).path).toBe("/workspace/deep/er");
    expect((await listDisk(img, "//workspace/emptydir")).entries).toEqual([]);
    expect(await code(listDisk(img, "a.txt"))).toBe("NOT_A_DIRECTORY");
    expect(await code(listDisk(img, "nope"))).toBe("FILE_NOT_FOUND");
    expect(await code(listDisk(img, ".."))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(listDisk(img, "/"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(listDisk(img, "/etc"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(listDisk(img, "/upper/workspace"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(listDisk(img, "escape"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(listDisk(img, "/workspace", { maxEntries: 0 }))).toBe("INVALID_INPUT");
  });

  test("a disk the guest never wrote to has an empty /workspace", async () => {
    expect(await listDisk(emptyImg, "/workspace", { recursive: true })).toEqual({
      path: "/workspace",
      entries: [],
      truncated: false,
    });
    expect(await code(listDisk(emptyImg, "sub"))).toBe("FILE_NOT_FOUND");
    expect(await code(readDisk(emptyImg, "a.txt"))).toBe("FILE_NOT_FOUND");
    expect(await code(readDisk(emptyImg, "/workspace"))).toBe("IS_A_DIRECTORY");
  });
});

describe("readDisk", () => {
  test("contents, truncation, offset", async () => {
    const before = sha(img);
    const a = await readDisk(img, "/workspace/a.txt");
    expect(new TextDecoder().decode(a.content)).toBe("hello\n");
    expect(a).toMatchObject({
      path: "/workspace/a.txt",
      size_bytes: 6,
      truncated: false,
      encoding_hint: "utf8",
    });

    const b = await readDisk(img, "sub/b.bin", { maxBytes: 1000 });
    expect(b.size_bytes).toBe(bBin.length);
    expect(b.truncated).toBe(true);
    expect(Buffer.from(b.content).equals(bBin.subarray(0, 1000))).toBe(true);

    const whole = await readDisk(img, "sub/b.bin", { maxBytes: 1 << 20 });
    expect(whole.truncated).toBe(false);
    expect(Buffer.from(whole.content).equals(bBin)).toBe(true);

    const mid = await readDisk(img, "sub/b.bin", { offset: 99_990, maxBytes: 100 });
    expect(Buffer.from(mid.content).equals(bBin.subarray(99_990))).toBe(true);
    expect(mid.truncated).toBe(false);

    const past = await readDisk(img, "a.txt", { offset: 100 });
    expect(past.content.byteLength).toBe(0);
    expect(past.truncated).toBe(false);

    // a huge (sparse) file: debugfs is stopped once enough bytes arrived
    const t0 = performance.now();
    const huge = await readDisk(img, "huge-sparse", { maxBytes: 16 });
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(huge).toMatchObject({ size_bytes: 4 * 2 ** 30, truncated: true, encoding_hint: "binary" });
    expect([...huge.content]).toEqual(new Array(16).fill(0));

    const zero = await readDisk(img, "a.txt", { maxBytes: 0 });
    expect(zero.content.byteLength).toBe(0);
    expect(zero.truncated).toBe(true);
    expect(sha(img)).toBe(before);
  });

  test("odd names", async () => {
    const text = async (p: string) => new TextDecoder().decode((await readDisk(img, p)).content);
    expect(await text("name with spaces.txt")).toBe("spaces");
    expect(await text("/workspace/ünïcödé.txt")).toBe("unicode ✓");
    expect(await text("new\nline")).toBe("nl");
    expect(await text('quo"te\\back')).toBe("q");
    expect(await text("<12>")).toBe("angle");
    expect(await text("x>")).toBe("gt");
    expect(await text("debugfs: ls -p <2>")).toBe("echo-like");
  });

  test("symlinks are followed only inside /workspace", async () => {
    const viaLink = await readDisk(img, "link");
    expect(viaLink.path).toBe("/workspace/a.txt");
    expect(new TextDecoder().decode(viaLink.content)).toBe("hello\n");
    expect((await readDisk(img, "abs")).path).toBe("/workspace/a.txt");
    expect((await readDisk(img, "dirlink/b.bin", { maxBytes: 10 })).path).toBe("/workspace/sub/b.bin");
    expect((await readDisk(img, "slowlink", { maxBytes: 10 })).path).toBe("/workspace/sub/b.bin");
    expect(await code(readDisk(img, "escape"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(readDisk(img, "up"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(readDisk(img, "loop1"))).toBe("INVALID_INPUT");
    const st = await statDisk(img, "escape");
    expect(st).toMatchObject({
      path: "/workspace/escape",
      artifact_type: "symlink",
      link_target: "/etc/passwd",
    });
  });

  test("escapes and wrong types", async () => {
    expect(await code(readDisk(img, "../etc/passwd"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(readDisk(img, "sub/../../x"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(readDisk(img, "/etc/passwd"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(readDisk(img, "/workspacex/a.txt"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(readDisk(img, "/upper/run/x"))).toBe("PATH_OUTSIDE_WORKSPACE");
    expect(await code(readDisk(img, "sub"))).toBe("IS_A_DIRECTORY");
    expect(await code(readDisk(img, "/workspace"))).toBe("IS_A_DIRECTORY");
    expect(await code(readDisk(img, "nope"))).toBe("FILE_NOT_FOUND");
    expect(await code(readDisk(img, "a.txt/x"))).toBe("NOT_A_DIRECTORY");
    expect(await code(readDisk(img, ""))).toBe("INVALID_INPUT");
    expect(await code(readDisk(img, "a\0b"))).toBe("INVALID_INPUT");
    expect(await code(readDisk(img, "a.txt", { maxBytes: 64 << 20 }))).toBe("INVALID_INPUT");
    expect(await code(readDisk(img, "fifo"))).toBe("INVALID_INPUT");
  });

  root.test("whiteouts are absent, devices are not files", async () => {
    expect(await code(readDisk(img, "gone"))).toBe("FILE_NOT_FOUND");
    expect(await code(statDisk(img, "gone"))).toBe("FILE_NOT_FOUND");
    expect(await code(readDisk(img, "devnull"))).toBe("INVALID_INPUT");
  });

  test("bad images", async () => {
    const junk = join(dir, "junk.img");
    writeFileSync(junk, randomBytes(8192));
    expect(await code(listDisk(junk, "/workspace"))).toBe("IO_ERROR");
    expect(await code(readDisk(join(dir, "missing.img"), "a.txt"))).toBe("FILE_NOT_FOUND");
  });
});

describe("unclean disks", () => {
  test("a journal needing recovery is WORKSPACE_NOT_STOPPED unless allowed", async () => {
    const dirty = join(dir, "dirty.ext4");
    copyFileSync(img, dirty);
    sh([findTool("debugfs"), "-w", "-R", "feature needs_recovery", dirty]);
    const before = sha(dirty);
    expect(await code(listDisk(dirty, "/workspace"))).toBe("WORKSPACE_NOT_STOPPED");
    expect(await code(readDisk(dirty, "a.txt"))).toBe("WORKSPACE_NOT_STOPPED");
    expect(await code(exportDisk(dirty, join(dir, "dirty-out.ext4")))).toBe("WORKSPACE_NOT_STOPPED");
    expect((await readDisk(dirty, "a.txt", { allowUnclean: true })).size_bytes).toBe(6);
    const out = await exportDisk(dirty, join(dir, "dirty-out.ext4"), { allowUnclean: true });
    expect(out.scrubbed.length).toBeGreaterThan(0);
    expect(Bun.spawnSync([findTool("e2fsck"), "-fn", out.output]).exitCode).toBe(0);
    expect((await listDisk(out.output, "/workspace")).entries.length).toBeGreaterThan(5);
    expect(sha(dirty)).toBe(before);
  });
});

describe("exportDisk", () => {
  test("scrubbed copy: runtime state gone, everything else intact, e2fsck clean", async () => {
    const before = sha(img);
    const out = join(dir, "export.ext4");
    const r = await exportDisk(img, out);
    expect(r.output).toBe(out);
    expect(r.size_bytes).toBe(statSync(img).size);
    expect(r.allocated_bytes).toBeLessThan(r.size_bytes);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(sha(img)).toBe(before);

    const fsck = Bun.spawnSync([findTool("e2fsck"), "-fn", out], { stdout: "pipe", stderr: "pipe" });
    expect(fsck.exitCode).toBe(0);

    const removed = Object.fromEntries(r.scrubbed.map((s) => [s.dir, s.removed]));
    expect(removed["/upper/run"]).toBe(14);
    expect(removed["/upper/tmp"]).toBe(1);
    expect(removed["/work"]).toBe(3);
    expect(removed["/pyro-state"]).toBe(1);

    const ls = (image: string, path: string) =>
      sh([findTool("debugfs"), "-R", `ls -p ${path}`, image])
        .split("\n")
        .filter((l) => l.startsWith("/"))
        .map((l) => l.split("/")[5])
        .filter((n) => n !== "." && n !== "..");
    expect(ls(out, "/upper/run")).toEqual([]);
    expect(ls(out, "/upper/tmp")).toEqual([]);
    expect(ls(out, "/work")).toEqual([]);
    expect(ls(out, "/pyro-state")).toEqual(["baseline"]);
    expect(ls(out, "/upper/root")).toEqual([".bash_history"]);

    // the workspace reads the same from the export
    const a = await listDisk(img, "/workspace", { recursive: true });
    const b = await listDisk(out, "/workspace", { recursive: true });
    expect(b).toEqual(a);
    expect(new TextDecoder().decode((await readDisk(out, "a.txt")).content)).toBe("hello\n"); // hard link survived

    // discarded free blocks: the deleted /tmp file's bytes are not in the export
    const bytes = readFileSync(out);
    expect(bytes.indexOf(secret.subarray(4096, 4096 + 64))).toBe(-1);
    expect(readFileSync(img).indexOf(secret.subarray(4096, 4096 + 64))).toBeGreaterThan(0);
  });

  test("no clobbering, overwrite on request, scrub off keeps everything", async () => {
    const out = join(dir, "export2.ext4");
    writeFileSync(out, "precious");
    expect(await code(exportDisk(img, out))).toBe("ALREADY_EXISTS");
    expect(readFileSync(out, "utf8")).toBe("precious");
    expect(await code(exportDisk(img, img, { overwrite: true }))).toBe("INVALID_INPUT");
    expect(await code(exportDisk(img, dir))).toBe("IS_A_DIRECTORY");
    expect(await code(exportDisk(img, join(dir, "no/such/dir/x.ext4")))).toBe("FILE_NOT_FOUND");

    const raw = await exportDisk(img, out, { overwrite: true, scrub: false });
    expect(raw.scrubbed).toEqual([]);
    expect(Bun.spawnSync([findTool("e2fsck"), "-fn", out]).exitCode).toBe(0);
    const run = sh([findTool("debugfs"), "-R", "ls -p /upper/run", out]);
    expect(run).toContain("/x/");
    // no temp files left beside the output
    const leftovers = sh(["ls", "-a", dir])
      .split("\n")
      .filter((n) => n.includes("pyro-export"));
    expect(leftovers).toEqual([]);
  });
});

describe("scale", () => {
  test("large directories: batching and pruned recursive listings", async () => {
    const st = join(dir, "big-staging");
    const ws = join(st, "upper/workspace");
    for (let d = 0; d < 5; d++) {
      mkdirSync(join(ws, `d${d}`), { recursive: true });
      for (let f = 0; f < 1000; f++) writeFileSync(join(ws, `d${d}`, `f${String(f).padStart(4, "0")}`), "");
    }
    const big = join(dir, "big.ext4");
    mkfs(big, st);
    const t0 = performance.now();
    const all = await listDisk(big, "/workspace", { recursive: true });
    const ms = performance.now() - t0;
    console.log(`recursive listing of 5005 entries: ${ms.toFixed(0)} ms`);
    expect(all.entries.length).toBe(5005);
    expect(all.truncated).toBe(false);
    expect(all.entries[1]?.path).toBe("/workspace/d0/f0000");
    expect(ms).toBeLessThan(20_000);
    const some = await listDisk(big, "/workspace", { recursive: true, maxEntries: 1500 });
    expect(some.entries.map((e) => e.path)).toEqual(all.entries.slice(0, 1500).map((e) => e.path));
    expect(some.truncated).toBe(true);
    const flat = await listDisk(big, "d3");
    expect(flat.entries.length).toBe(1000);
  });
});

// last in the file: every test above only read `img` (exports copy it first)
test("the source image is byte-identical after all the operations above", () => {
  expect(sha(img)).toBe(imgSha);
});
