/**
 * The fuzz targets: the agent's unified-diff patch parser with its check step, and the tar
 * reader with, for a sample of cases, a full unpack into a temp root.
 *
 * Patch: each case is parsePatch(), then check() against a fixed tree (check reads the tree
 * and plans the change; nothing is written before commit, which is not fuzzed). The tree is
 * verified unchanged at teardown.
 * Tar: every case parses the whole stream and drains every body (readTar: header, PAX, GNU
 * long-name, sparse parsing); one case in UNPACK_EVERY is also unpacked with unpackTar into a
 * fresh root three levels below the sandbox top, after which nothing outside that root may
 * differ (names, types, sizes, contents of the sandbox; the absolute paths the seeds aim at
 * must not exist). The sample keeps the run near its time budget: an unpack costs ~100x a parse.
 * Seeds are deterministic (no temp paths in them) so a case can be regenerated from its index.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { check, View } from "../../guest/patch/check.ts";
import { parsePatch, patchText } from "../../guest/patch/parse.ts";
import { realRoot } from "../../guest/paths.ts";
import { readTar, type TarWriteEntry, writeTar } from "../../src/protocol/archive/tar.ts";
import { unpackTar } from "../../src/protocol/archive/unpack.ts";
import type { FuzzTarget, Rng } from "./harness.ts";

const enc = new TextEncoder();

// ------------------------------------------------------------------ patch

const A_TXT = Array.from({ length: 12 }, (_, i) => `line ${i + 1}`)
  .join("\n")
  .concat("\n");
const PATCH_SEEDS = [
  `--- a/a.txt\n+++ b/a.txt\n@@ -1,4 +1,4 @@\n line 1\n-line 2\n+line two\n line 3\n line 4\n@@ -10,3 +10,4 @@\n line 10\n line 11\n line 12\n+line 13\n`,
  `diff --git a/new.txt b/new.txt\nnew file mode 100644\nindex 0000000..3b18e51\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+hello\n+world\n\\ No newline at end of file\n`,
  `diff --git a/sub/b.txt b/sub/b.txt\ndeleted file mode 100644\n--- a/sub/b.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-b1\n-b2\n`,
  `diff --git a/a.txt b/renamed.txt\nsimilarity index 90%\nrename from a.txt\nrename to renamed.txt\n--- a/a.txt\n+++ b/renamed.txt\n@@ -12 +12 @@\n-line 12\n+line twelve\n`,
  `diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n`,
  `diff --git a/ln b/ln\nnew file mode 120000\n--- /dev/null\n+++ b/ln\n@@ -0,0 +1 @@\n+a.txt\n\\ No newline at end of file\n`,
  `diff --git "a/sp ace\\303\\251.txt" "b/sp ace\\303\\251.txt"\nnew file mode 100644\n--- /dev/null\n+++ "b/sp ace\\303\\251.txt"\n@@ -0,0 +1 @@\n+x\n`,
  `diff --git a/bin.dat b/bin.dat\ndeleted file mode 100644\nindex 1234567..0000000\nBinary files a/bin.dat and /dev/null differ\n`,
  `diff --git a/a.txt b/copy.txt\nsimilarity index 100%\ncopy from a.txt\ncopy to copy.txt\n`,
  `--- a.txt\t2020-01-01 00:00:00.000000000 +0000\n+++ a.txt\t2020-01-02 00:00:00.000000000 +0000\n@@ -5,3 +5,3 @@\n line 5\n-line 6\n+line 6!\n line 7\n`,
  `--- /dev/null\n+++ b/../escape\n@@ -0,0 +1 @@\n+pwned\n`,
  `--- a/outlink/secret\n+++ b/outlink/secret\n@@ -1 +1 @@\n-secret\n+pwned\n`,
  `diff --git a/link b/link\n--- a/link\n+++ b/link\n@@ -1 +1 @@\n-a.txt\n\\ No newline at end of file\n+../outside\n\\ No newline at end of file\n`,
  `From 1234 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] x\n\n---\n a.txt | 2 +-\n\n${"--- a/a.txt\n+++ b/a.txt\n@@ -3 +3 @@\n-line 3\n+line 3\r\n"}-- \n2.39.5\n`,
];

let patchRoot = "";
let patchBase = "";
let patchRootReal = "";
function patchTree(): string {
  const h = new Bun.CryptoHasher("sha256");
  const walk = (dir: string) => {
    for (const n of readdirSync(dir).sort()) {
      const p = join(dir, n);
      const st = lstatSync(p);
      h.update(`${p}:${st.mode}:${st.size}:${st.mtimeMs}\n`);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) h.update(readFileSync(p));
    }
  };
  walk(patchBase);
  return h.digest("hex");
}
let patchTreeBefore = "";

export const patchTarget: FuzzTarget = {
  name: "patch",
  text: true,
  dictionary: [
    "diff --git a/x b/x\n",
    "--- a/",
    "+++ b/",
    "--- /dev/null\n",
    "+++ /dev/null\n",
    "@@ -1,3 +1,4 @@\n",
    "@@ -0,0 +1 @@\n",
    "@@ -4294967295,1 +1 @@\n",
    "\n",
    "+",
    "-",
    " ",
    "\\ No newline at end of file\n",
    "new file mode 100644\n",
    "deleted file mode 100755\n",
    "old mode 100644\n",
    "new mode 120000\n",
    "rename from a.txt\n",
    "rename to ",
    "copy from ",
    "copy to ",
    "similarity index 90%\n",
    "index 0000000..1111111 100644\n",
    "GIT binary patch\nliteral 0\n",
    "Binary files a/x and b/x differ\n",
    '"',
    "\\",
    "\\303\\251",
    "\\777",
    "../",
    "/",
    "a/",
    "b/",
    "outlink/",
    "link/",
    "\t2020-01-01 00:00:00\n",
    "\r\n",
    "\u00ff\u00fe",
  ],
  seeds: async () => PATCH_SEEDS.map((s) => enc.encode(s)),
  async setup() {
    patchBase = mkdtempSync(join(tmpdir(), "pyro-fuzz-patch-"));
    patchRoot = join(patchBase, "ws");
    mkdirSync(join(patchRoot, "sub"), { recursive: true });
    mkdirSync(join(patchBase, "outside"));
    writeFileSync(join(patchBase, "outside", "secret"), "secret\n");
    writeFileSync(join(patchRoot, "a.txt"), A_TXT);
    writeFileSync(join(patchRoot, "sub", "b.txt"), "b1\nb2\n");
    writeFileSync(join(patchRoot, "run.sh"), "#!/bin/sh\n", { mode: 0o644 });
    writeFileSync(join(patchRoot, "bin.dat"), new Uint8Array([0, 1, 2, 255]));
    symlinkSync("a.txt", join(patchRoot, "link"));
    symlinkSync("../outside", join(patchRoot, "outlink"));
    patchRootReal = await realRoot(patchRoot);
    patchTreeBefore = patchTree();
  },
  async teardown() {
    const after = patchTree();
    rmSync(patchBase, { recursive: true, force: true });
    if (after !== patchTreeBefore) throw new Error("the patch check step changed the tree");
  },
  async run(input) {
    const sections = parsePatch(patchText(input));
    if (sections.length > 0) await check(new View(patchRootReal), sections);
  },
};

// ------------------------------------------------------------------ tar

export const UNPACK_EVERY = 20;
/** Absolute targets the seeds aim at: they must never appear. */
const ABS_ESCAPES = ["/pyro-fuzz-escape", join(tmpdir(), "pyro-fuzz-escape")];

async function tarBytes(entries: TarWriteEntry[]): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of writeTar(entries)) parts.push(c);
  return new Uint8Array(Buffer.concat(parts));
}
const file = (path: string, text: string, mode = 0o644): TarWriteEntry => ({
  header: { path, type: "file", size: enc.encode(text).length, mode, mtime: 1_600_000_000 },
  body: [enc.encode(text)],
});
const link = (path: string, type: "symlink" | "hardlink", linkTarget: string): TarWriteEntry => ({
  header: { path, type, linkTarget, mode: 0o777 },
});
const dir = (path: string, mode = 0o755): TarWriteEntry => ({ header: { path, type: "directory", mode } });

/** A GNU long-name ('L') header followed by an entry whose ustar name is truncated. */
function gnuLongName(name: string, text: string): Uint8Array {
  const body = enc.encode(`${name}\0`);
  const header = (n: string, type: string, size: number) => {
    const b = new Uint8Array(512);
    b.set(enc.encode(n.slice(0, 99)), 0);
    b.set(enc.encode("0000644\0"), 100);
    b.set(enc.encode("0000000\0"), 108);
    b.set(enc.encode("0000000\0"), 116);
    b.set(enc.encode(`${size.toString(8).padStart(11, "0")}\0`), 124);
    b.set(enc.encode("00000000000\0"), 136);
    b[156] = type.charCodeAt(0);
    b.set(enc.encode("ustar  \0"), 257);
    fixChecksum(b);
    return b;
  };
  const pad = (n: number) => new Uint8Array((512 - (n % 512)) % 512);
  const data = enc.encode(text);
  return new Uint8Array(
    Buffer.concat([
      header("././@LongLink", "L", body.length),
      body,
      pad(body.length),
      header(name, "0", data.length),
      data,
      pad(data.length),
      new Uint8Array(1024),
    ]),
  );
}

function fixChecksum(b: Uint8Array): void {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[i] as number;
  b.set(enc.encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
}

const isHeader = (b: Uint8Array, at: number) =>
  b[at + 257] === 0x75 && b[at + 258] === 0x73 && b[at + 259] === 0x74 && b[at + 260] === 0x61;

const EVIL_NAMES = [
  "..",
  "../x",
  "a/../../x",
  "/pyro-fuzz-escape/x",
  `${ABS_ESCAPES[1]}/x`,
  "out/x",
  "./",
  "",
  "a".repeat(255),
  `${"d/".repeat(60)}f`,
  "a\\..\\x",
  "x/.",
  "hl",
];

let tarSeeds: Uint8Array[] | null = null;
let sandbox = "";
let tarRoot = "";
let sandboxBefore = "";

function sandboxListing(): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (p === tarRoot) continue;
      const st = lstatSync(p);
      out.push(`${p.slice(sandbox.length)} ${st.mode} ${st.isDirectory() ? "" : `${st.size} ${st.nlink}`}`);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out.push(Bun.hash(readFileSync(p)).toString(16));
    }
  };
  walk(sandbox);
  return out.join("\n");
}

/** The tar sandbox's top (for the test proving the escape check fires). */
export const tarSandbox = () => sandbox;

export const tarTarget: FuzzTarget = {
  name: "tar",
  text: false,
  dictionary: [
    "ustar\x0000",
    "ustar  \x00",
    "././@LongLink",
    "../",
    "/",
    "..",
    "\x00",
    "0000644\x00",
    "00000000001\x00",
    "77777777777\x00",
    "\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
    "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    "30 path=../../escape\n",
    "20 linkpath=/etc/x\n",
    "18 size=99999999\n",
    "20 mtime=1e400\n",
    "9 x=\n",
    "GNU.sparse.map=0,10\n",
    "x",
    "L",
    "K",
    "g",
    "S",
    "1",
    "2",
    "5",
  ],
  async seeds() {
    if (tarSeeds) return tarSeeds;
    tarSeeds = [
      await tarBytes([
        dir("d"),
        file("d/a.txt", "hello\n"),
        link("d/s", "symlink", "a.txt"),
        link("d/h", "hardlink", "d/a.txt"),
      ]),
      await tarBytes([
        file("../x", "x"),
        file("a/../../y", "y"),
        file("/pyro-fuzz-escape/z", "z"),
        file(`${ABS_ESCAPES[1]}/w`, "w"),
      ]),
      await tarBytes([link("out", "symlink", "../../.."), file("out/x", "through a symlink"), dir("out/d")]),
      await tarBytes([link("abs", "symlink", ABS_ESCAPES[1] as string), file("abs/x", "x")]),
      await tarBytes([
        link("hl", "hardlink", "../../outside/secret"),
        link("hl2", "hardlink", "/etc/hostname"),
      ]),
      await tarBytes([
        file(`${"long-name-".repeat(30)}.txt`, "pax path"),
        link("l", "symlink", "t".repeat(300)),
      ]),
      await tarBytes([
        dir("ro", 0o555),
        file("ro/f", "f"),
        file("x", "first"),
        file("x", "second"),
        dir("x"),
      ]),
      gnuLongName(`${"g".repeat(150)}/../../escape`, "gnu"),
    ];
    // device and fifo entries: a valid header with typeflag 3/4/6
    const dev = new Uint8Array(await tarBytes([file("dev", "")]));
    for (const [i, t] of ["3", "4", "6"].entries()) {
      const b = new Uint8Array(dev);
      b.set(enc.encode(`dev${i}`), 0);
      b[156] = t.charCodeAt(0);
      fixChecksum(b);
      tarSeeds.push(b);
    }
    return tarSeeds;
  },
  mutate(input: Uint8Array, rng: Rng): Uint8Array {
    const b = new Uint8Array(input);
    const headers: number[] = [];
    for (let at = 0; at + 512 <= b.length; at += 512) if (isHeader(b, at)) headers.push(at);
    if (headers.length === 0) return b;
    const at = headers[Math.floor(rng() * headers.length)] as number;
    const put = (off: number, width: number, s: string) => {
      b.fill(0, at + off, at + off + width);
      b.set(enc.encode(s).subarray(0, width), at + off);
    };
    switch (Math.floor(rng() * 6)) {
      case 0:
        put(0, 100, EVIL_NAMES[Math.floor(rng() * EVIL_NAMES.length)] as string);
        break;
      case 1:
        put(157, 100, EVIL_NAMES[Math.floor(rng() * EVIL_NAMES.length)] as string);
        break;
      case 2:
        b[at + 156] = "0123456LKxgS7\0Z".charCodeAt(Math.floor(rng() * 15));
        break;
      case 3:
        put(124, 12, `${Math.floor(rng() * 2 ** (rng() * 40)).toString(8)}\0`);
        break;
      case 4:
        put(100, 8, `${Math.floor(rng() * 0o170000).toString(8)}\0`);
        break;
      default:
        put(345, 155, rng() < 0.5 ? ".." : "/pyro-fuzz-escape");
    }
    if (rng() < 0.9) fixChecksum(b.subarray(at, at + 512));
    return b;
  },
  async setup() {
    sandbox = mkdtempSync(join(tmpdir(), "pyro-fuzz-tar-"));
    mkdirSync(join(sandbox, "outside"));
    writeFileSync(join(sandbox, "outside", "secret"), "secret\n");
    mkdirSync(join(sandbox, "l1", "l2"), { recursive: true });
    writeFileSync(join(sandbox, "l1", "sib"), "sibling\n");
    tarRoot = join(sandbox, "l1", "l2", "root");
    mkdirSync(tarRoot);
    sandboxBefore = sandboxListing();
  },
  async teardown() {
    rmSync(sandbox, { recursive: true, force: true });
  },
  async run(input, index) {
    const source = (async function* () {
      yield input;
    })();
    if (index % UNPACK_EVERY !== 0) {
      for await (const entry of readTar(source, { maxEntrySize: 1 << 20 })) for await (const _ of entry.body);
      return;
    }
    rmSync(tarRoot, { recursive: true, force: true });
    mkdirSync(tarRoot);
    // The escape check runs whether the unpack succeeded or was refused part way.
    const outcome = await unpackTar(source, tarRoot, { maxBytes: 4 << 20, maxEntries: 1000 }).then(
      () => null,
      (err: unknown) => err,
    );
    const after = sandboxListing();
    if (after !== sandboxBefore) throw new Error(`unpack wrote outside its root:\n${after}`);
    for (const p of ABS_ESCAPES)
      if (existsSync(p)) throw new Error(`unpack wrote outside its root: ${p} exists`);
    if (outcome) throw outcome;
  },
};
