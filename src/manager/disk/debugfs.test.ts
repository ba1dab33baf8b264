import { describe, expect, test } from "bun:test";
import { PyroError } from "../../protocol/errors.ts";
import { decodeInode, isWhiteout, parseInodeDump, parseLs, parseStat, splitEchoed } from "./debugfs.ts";

const latin1 = (s: string) => Buffer.from(s, "utf8").toString("latin1");

describe("parseLs", () => {
  test("raw names: spaces, newlines, quotes, echo look-alikes, UTF-8 bytes", () => {
    const names = ["a b", "new\nline", 'q"\\', "debugfs: ls -p <2>", latin1("ünï"), "<12>", "x>"];
    const section = [
      "/2/040755/0/0/.//\n",
      "/2/040755/0/0/..//\n",
      ...names.map((n, i) => `/${20 + i}/100644/1000/-1/${n}/${i}/\n`),
      "/40/040700/0/0/dir//\n",
      "\n",
    ].join("");
    const out = parseLs(section);
    expect(out.map((e) => e.name)).toEqual([...names, "dir"]);
    expect(out[1]).toEqual({ ino: 21, mode: 0o100644, name: "new\nline", size: 1 });
    expect(out.at(-1)).toEqual({ ino: 40, mode: 0o040700, name: "dir", size: 0 });
  });

  test("a name with a slash (crafted image) is an error, not a shifted parse", () => {
    expect(() => parseLs("/20/100644/0/0/a/5/b/1/\n")).toThrow(PyroError);
    expect(() => parseLs("garbage\n")).toThrow(PyroError);
  });

  test("batch sections are cut at the echoes, never inside an entry", () => {
    const out =
      "debugfs: ls -p <2>\n/12/100644/0/0/x\ndebugfs: ls -p <13>\n/5/\n\n" +
      "debugfs: ls -p <13>\n/14/100644/0/0/y/1/\n\n";
    const [a, b] = splitEchoed(out, ["ls -p <2>", "ls -p <13>"]);
    expect(parseLs(a!).map((e) => e.name)).toEqual(["x\ndebugfs: ls -p <13>\n"]);
    expect(parseLs(b!).map((e) => e.name)).toEqual(["y"]);
    expect(() => splitEchoed(out, ["ls -p <3>", "ls -p <13>"])).toThrow(PyroError);
  });
});

describe("inodes", () => {
  const dump = [
    "0000  ffa1 0000 0500 0000 c05a 026b c05a 026b  .........Z.k.Z.k",
    "0020  c05a 026b 0000 0000 0000 0100 0000 0000  .Z.k............",
    "0040  0000 0000 0000 0000 612e 7478 7400 0000  ........a.txt...",
    "0060  0000 0000 0000 0000 0000 0000 0000 0000  ................",
    "*",
    "0160  0000 0000 0000 0000 0000 0000 dfb3 0000  ................",
    "0200  2000 a41f 0000 0000 0000 0000 0000 0000   ...............",
    "0220  c05a 026b 0400 0000 0000 0000 0000 0000  .Z.k............",
    "0240  0000 0000 0000 0000 0000 0000 0000 0000  ................",
    "*",
    "",
  ].join("\n");

  test("inode_dump: octal offsets and repeats rebuild the raw inode", () => {
    const raw = parseInodeDump(dump, 256);
    expect(raw.length).toBe(256);
    const inode = decodeInode(20, raw, 4096);
    expect(inode.mode).toBe(0o120777);
    expect(inode.size).toBe(5);
    expect(inode.fastLinkTarget).toBe("a.txt");
    // mtime 0x6b025ac0 with mtime_extra 4 (1 ns << 2)
    expect(inode.mtimeMs).toBe(0x6b025ac0 * 1000);
    expect(() => parseInodeDump(dump, 512)).not.toThrow(); // trailing repeat fills any size
    expect(() => parseInodeDump("0000  zz\n", 256)).toThrow(PyroError);
  });

  test("device numbers, old and new encodings; whiteouts", () => {
    const raw = Buffer.alloc(256);
    raw.writeUInt16LE(0o020644, 0);
    expect(isWhiteout(decodeInode(1, raw, 4096))).toBe(true);
    raw.writeUInt32LE(0x0103, 40); // old: major 1 minor 3
    expect(decodeInode(1, raw, 4096).rdev).toEqual({ major: 1, minor: 3 });
    raw.writeUInt32LE(0, 40);
    raw.writeUInt32LE((0x12345 & 0xff) | (259 << 8) | ((0x12345 & ~0xff) << 12), 44);
    expect(decodeInode(1, raw, 4096).rdev).toEqual({ major: 259, minor: 0x12345 });
    expect(isWhiteout(decodeInode(1, raw, 4096))).toBe(false);
  });

  test("stat: header fields only, small and large inodes", () => {
    const big = [
      "Inode: 17   Type: regular    Mode:  0640   Flags: 0x80000",
      "Generation: 0    Version: 0x00000000:00000000",
      "User:  1000   Group:   100   Project:     0   Size: 5000000000",
      "File ACL: 0",
      "Links: 1   Blockcount: 2",
      "Fragment:  Address: 0    Number: 0    Size: 0",
      " ctime: 0x00000001:00000000 -- x",
      " atime: 0x00000002:00000000 -- x",
      " mtime: 0xffffffff:00000001 -- x",
      "crtime: 0x00000004:00000000 -- x",
      "Extended attributes:",
      '  user.a (3) = "\\n mtime: 0x00000000"',
      "",
    ].join("\n");
    expect(parseStat(17, 0o100000, big)).toEqual({
      ino: 17,
      mode: 0o100640,
      uid: 1000,
      gid: 100,
      size: 5_000_000_000,
      mtimeMs: (2 ** 32 - 1) * 1000, // -1 plus epoch bit 1
    });
    const small =
      "Inode: 3   Type: FIFO    Mode:  0600   Flags: 0x0\nUser:     0   Group:     0   Size: 0\nmtime: 0x00000010 -- x\n";
    expect(parseStat(3, 0o010000, small).mtimeMs).toBe(16_000);
    expect(() => parseStat(3, 0o100000, small)).toThrow(PyroError); // listed as a file, is a FIFO
    expect(() => parseStat(4, 0o010000, small)).toThrow(PyroError);
  });
});
