import { describe, expect, test } from "bun:test";
import { needs } from "../../../test/capabilities.ts";
import { PyroError } from "../errors.ts";
import { maybeGunzip } from "./gzip.ts";
import { encodeTarHeader, readTar, type TarEntryInfo, type TarWriteEntry, writeTar } from "./tar.ts";
import { chunked, collect, prng, run, tempDir } from "./testutil.ts";

const enc = new TextEncoder();

async function pack(entries: TarWriteEntry[]): Promise<Uint8Array<ArrayBuffer>> {
  return collect(writeTar(entries));
}

async function parse(
  src: AsyncIterable<Uint8Array> | Uint8Array,
  opts = {},
): Promise<(TarEntryInfo & { data: Uint8Array })[]> {
  const out: (TarEntryInfo & { data: Uint8Array })[] = [];
  const source = src instanceof Uint8Array ? chunked(src, 4096) : src;
  for await (const e of readTar(source, opts)) {
    const { body, ...info } = e;
    out.push({ ...info, data: await collect(body) });
  }
  return out;
}

async function expectInvalid(p: Promise<unknown>): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e) => e,
  );
  expect(err).toBeInstanceOf(PyroError);
  expect((err as PyroError).code).toBe("INVALID_INPUT");
}

const file = (path: string, text: string, extra: Partial<TarWriteEntry["header"]> = {}): TarWriteEntry => {
  const data = enc.encode(text);
  return {
    header: { path, type: "file", size: data.length, mode: 0o644, mtime: 1_700_000_000, ...extra },
    body: [data],
  };
};

describe("tar writer/reader round trip", () => {
  test("entry kinds, long and non-ASCII names, long links, PAX fields", async () => {
    const longDir = `${"d".repeat(60)}/${"e".repeat(60)}/${"f".repeat(60)}`; // > 100, splittable
    const longName = `${"x".repeat(120)}/${"y".repeat(150)}.txt`; // needs PAX path
    const archive = await pack([
      { header: { path: "dir", type: "directory", mode: 0o750, mtime: 1_600_000_000 } },
      file("dir/a.txt", "hello\n", { mode: 0o600 }),
      file(`${longDir}/g.txt`, "split"),
      file(longName, "pax"),
      file("ünïcødé/名前.txt", "utf8"),
      { header: { path: "link", type: "symlink", linkTarget: `/${"t".repeat(200)}` } },
      { header: { path: "hard", type: "hardlink", linkTarget: "dir/a.txt" } },
      file("frac", "", {
        mtime: 1_700_000_000.25,
        uid: 9_000_000,
        gid: 5,
        uname: "someone-with-a-very-long-user-name",
      }),
      file("old", "", { mtime: -5 }),
    ]);
    const got = await parse(archive);
    expect(got.map((e) => [e.path, e.type])).toEqual([
      ["dir/", "directory"],
      ["dir/a.txt", "file"],
      [`${longDir}/g.txt`, "file"],
      [longName, "file"],
      ["ünïcødé/名前.txt", "file"],
      ["link", "symlink"],
      ["hard", "hardlink"],
      ["frac", "file"],
      ["old", "file"],
    ]);
    expect(got[0]!.mode).toBe(0o750);
    expect(got[0]!.mtime).toBe(1_600_000_000);
    expect(new TextDecoder().decode(got[1]!.data)).toBe("hello\n");
    expect(got[1]!.mode).toBe(0o600);
    expect(new TextDecoder().decode(got[3]!.data)).toBe("pax");
    expect(got[5]!.linkTarget).toBe(`/${"t".repeat(200)}`);
    expect(got[6]!.linkTarget).toBe("dir/a.txt");
    expect(got[7]!.mtime).toBe(1_700_000_000.25);
    expect(got[7]!.uid).toBe(9_000_000);
    expect(got[7]!.uname).toBe("someone-with-a-very-long-user-name");
    expect(got[8]!.mtime).toBe(-5);
  });

  test("a size beyond the ustar field travels in PAX", async () => {
    const header = encodeTarHeader({ path: "big", type: "file", size: 2 ** 40 });
    const got: TarEntryInfo[] = [];
    const err = await (async () => {
      for await (const e of readTar(chunked(header, 512))) got.push(e);
    })().catch((e) => e);
    expect(got[0]?.size).toBe(2 ** 40);
    expect(err.code).toBe("INVALID_INPUT"); // the body is missing: truncated, not a hang
  });

  test("a 5 MB file through 1-byte and random-sized chunks, streamed in bounded pieces", async () => {
    const rand = prng(42);
    const big = new Uint8Array(5 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 11)) & 0xff;
    const archive = await pack([
      file("before", "x"),
      { header: { path: "big.bin", type: "file", size: big.length }, body: [big] },
      file("after", "y"),
    ]);
    for (const source of [chunked(archive, 1), chunked(archive, () => Math.floor(rand() * 70_000))]) {
      let maxChunk = 0;
      const names: string[] = [];
      let hash = 0n;
      for await (const e of readTar(source)) {
        names.push(e.path);
        const parts: Uint8Array[] = [];
        for await (const c of e.body) {
          maxChunk = Math.max(maxChunk, c.length);
          parts.push(c);
        }
        if (e.path === "big.bin") hash = BigInt(Bun.hash(Buffer.concat(parts)));
      }
      expect(names).toEqual(["before", "big.bin", "after"]);
      expect(hash).toBe(BigInt(Bun.hash(big)));
      expect(maxChunk).toBeLessThanOrEqual(70_000); // bounded pieces, never the whole file
    }
  }, 120_000);

  test("unread bodies are skipped; a stale body throws", async () => {
    const archive = await pack([file("a", "aaaa"), file("b", "bbbb")]);
    const bodies: AsyncIterable<Uint8Array>[] = [];
    const names: string[] = [];
    for await (const e of readTar(chunked(archive, 3))) {
      names.push(e.path);
      bodies.push(e.body);
    }
    expect(names).toEqual(["a", "b"]);
    await expect(collect(bodies[0]!)).rejects.toThrow();
  });

  test("writer refuses a body that does not match its size", async () => {
    await expect(
      pack([{ header: { path: "a", type: "file", size: 3 }, body: [enc.encode("toolong")] }]),
    ).rejects.toThrow(/longer/);
    await expect(pack([{ header: { path: "a", type: "file", size: 3 }, body: [] }])).rejects.toThrow(
      /shorter/,
    );
  });
});

describe("malformed input is INVALID_INPUT, never a crash or hang", () => {
  const good = pack([file("a.txt", "hello"), file("b/c.txt", "x".repeat(1000))]);

  test("empty input and random bytes", async () => {
    await expectInvalid(parse(new Uint8Array(0)));
    const rand = prng(7);
    for (let n = 0; n < 20; n++) {
      const junk = new Uint8Array(512 * (1 + (n % 4)) + n).map(() => Math.floor(rand() * 256));
      await expectInvalid(parse(junk));
    }
  });

  test("every truncation of a valid archive", async () => {
    const archive = await good;
    const end = archive.length - 1024; // cuts inside the end marker may still parse
    for (let cut = 1; cut < end; cut += cut < 1100 ? 1 : 97) {
      await expectInvalid(parse(archive.subarray(0, cut)));
    }
  });

  test("bad checksum, bad octal, absurd sizes, bad PAX", async () => {
    const archive = await good;
    const flipped = archive.slice();
    flipped[10] = flipped[10]! ^ 0x01;
    await expectInvalid(parse(flipped));

    // a bad digit in the size field with a checksum that matches
    const withSize = (size: string) => {
      const h = archive.slice(0, 512);
      h.set(enc.encode(size), 124);
      h.fill(0x20, 148, 156);
      const sum = h.reduce((a, b) => a + b, 0);
      h.set(enc.encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
      return h;
    };
    await expectInvalid(parse(withSize("0000000009x\0")));
    await expectInvalid(parse(withSize("77777777777\0"))); // 8 GiB declared, input ends
    await expectInvalid(parse(await pack([file("a", "abc")]), { maxEntrySize: 2 }));

    const paxEntry = (body: string) => {
      const b = enc.encode(body);
      const h = encodeTarHeader({ path: "p", type: "file", size: b.length });
      h[156] = "x".charCodeAt(0);
      h.fill(0x20, 148, 156);
      const sum = h.subarray(0, 512).reduce((a, c) => a + c, 0);
      h.set(enc.encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
      const out = new Uint8Array(512 + 512 + 512 + 1024);
      out.set(h.subarray(0, 512), 0);
      out.set(b, 512);
      out.set(encodeTarHeader({ path: "q", type: "file", size: 0 }), 1024);
      return out;
    };
    await expectInvalid(parse(paxEntry("999 path=x\n")));
    await expectInvalid(parse(paxEntry("abc path=x\n")));
    await expectInvalid(parse(paxEntry("11 size=zz\n")));
    expect((await parse(paxEntry("10 path=x\n")))[0]?.path).toBe("x");

    // a PAX header claiming 1 GiB of metadata is refused before reading it
    const huge = encodeTarHeader({ path: "p", type: "file", size: 1024 ** 3 });
    huge[156] = "x".charCodeAt(0);
    huge.fill(0x20, 148, 156);
    huge.set(
      enc.encode(
        `${huge
          .reduce((a, c) => a + c, 0)
          .toString(8)
          .padStart(6, "0")}\0 `,
      ),
      148,
    );
    await expectInvalid(parse(huge));
  });

  test("random mutations of a valid archive", async () => {
    const archive = await good;
    const rand = prng(1234);
    for (let i = 0; i < 400; i++) {
      const m = archive.slice();
      for (let k = 0; k < 1 + (i % 5); k++) m[Math.floor(rand() * 1536)] = Math.floor(rand() * 256);
      const err = await parse(m).then(
        () => undefined,
        (e) => e,
      );
      if (err !== undefined) expect((err as PyroError).code).toBe("INVALID_INPUT");
    }
  });
});

describe("maybeGunzip", () => {
  test("plain passes through, gzip is inflated, corrupt gzip is INVALID_INPUT", async () => {
    const archive = await pack([file("a", "abc")]);
    expect(await collect(maybeGunzip(chunked(archive, 1)))).toEqual(archive);
    const gz = Bun.gzipSync(archive);
    expect(await collect(maybeGunzip(chunked(gz, 1)))).toEqual(archive);
    expect(await collect(maybeGunzip(chunked(new Uint8Array([0x1f]), 1)))).toEqual(new Uint8Array([0x1f]));
    const bad = gz.slice(0, 40);
    bad[20] = bad[20]! ^ 0xff;
    await expectInvalid(collect(maybeGunzip(chunked(bad, 7))));
  });
});

needs("tar").describe("GNU tar interop (reader)", () => {
  test("gnu and posix formats, long names, symlinks, hardlinks", async () => {
    const dir = await tempDir("tar-gnu");
    try {
      const long = `${"n".repeat(150)}/${"m".repeat(120)}`;
      run(["mkdir", "-p", `${dir.path}/src/${long}`]);
      await Bun.write(`${dir.path}/src/${long}/f.txt`, "deep");
      await Bun.write(`${dir.path}/src/plain.txt`, "plain");
      run(["ln", "-s", "plain.txt", `${dir.path}/src/sym`]);
      run(["ln", `${dir.path}/src/plain.txt`, `${dir.path}/src/hard`]);
      for (const format of ["gnu", "posix", "ustar"]) {
        if (format === "ustar") {
          // ustar cannot hold the long name; check it still reads what it can
          run(["rm", "-rf", `${dir.path}/src/${"n".repeat(150)}`]);
        }
        const archive = run(["tar", `--format=${format}`, "-C", `${dir.path}/src`, "-cf", "-", "."]);
        const got = await parse(archive);
        const byPath = new Map(got.map((e) => [e.path.replace(/^\.\//, "").replace(/\/$/, ""), e]));
        expect(byPath.get("sym")).toMatchObject({ type: "symlink", linkTarget: "plain.txt" });
        // whichever of the two names tar met first holds the data, the other links to it
        const pair = [byPath.get("hard")!.type, byPath.get("plain.txt")!.type].sort();
        expect(pair).toEqual(["file", "hardlink"]);
        if (format !== "ustar") {
          expect(new TextDecoder().decode(byPath.get(`${long}/f.txt`)?.data)).toBe("deep");
        }
      }
    } finally {
      await dir.cleanup();
    }
  });
});
