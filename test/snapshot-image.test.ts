/**
 * Disk-image snapshots on the host side (src/manager/disk-image.ts): the content digest
 * reads only data extents yet catches any changed byte, a hole and written zeros digest the
 * same (a sparse copy turns one into the other), a copy verifies against its source's digest
 * and a flipped byte is SNAPSHOT_CORRUPT, temp files of dead writers are swept, and two
 * directories swap atomically.
 */
import { afterAll, describe, expect, test } from "bun:test";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  cloneImage,
  DIGEST_BLOCK,
  exchangePaths,
  IMAGE_DIGEST_PREFIX,
  imageDigest,
  sweepTemps,
  verifyContent,
} from "../src/manager/disk-image.ts";

const dir = mkdtempSync(join(tmpdir(), "pyro-image-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A sparse file of `size` bytes with `chunks` written at their offsets. */
function sparse(name: string, size: number, chunks: [number, Uint8Array][]): string {
  const p = join(dir, name);
  rmSync(p, { force: true });
  const fd = openSync(p, "w");
  for (const [off, bytes] of chunks) writeSync(fd, bytes, 0, bytes.length, off);
  closeSync(fd);
  // truncate to the apparent size (holes at the end)
  truncateSync(p, size);
  return p;
}

const GiB = 1024 ** 3;
const data = (n: number, seed: number) => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) % 251 || 1;
  return b;
};

describe("imageDigest", () => {
  test("reads only data: a 4 GiB sparse file with 1 MiB of data digests its data bytes", () => {
    const p = sparse("a.img", 4 * GiB, [
      [0, data(4096, 1)],
      [3 * GiB + 12345, data(1024 * 1024, 2)],
    ]);
    expect(statSync(p).blocks * 512).toBeLessThan(4 * 1024 * 1024); // really sparse
    const d = imageDigest(p);
    expect(d.digest.startsWith(IMAGE_DIGEST_PREFIX)).toBe(true);
    expect(d.size).toBe(4 * GiB);
    // the data straddles 64 KiB blocks: whole blocks are digested
    expect(d.data_bytes).toBeGreaterThanOrEqual(4096 + 1024 * 1024);
    expect(d.data_bytes).toBeLessThanOrEqual(DIGEST_BLOCK + 1024 * 1024 + 2 * DIGEST_BLOCK);
    expect(imageDigest(p).digest).toBe(d.digest); // stable
  });

  test("any changed byte changes it: inside data, in a hole, zeroed away, or the size", () => {
    const base: [number, Uint8Array][] = [
      [0, data(8192, 3)],
      [GiB, data(70000, 4)],
    ];
    const d0 = imageDigest(sparse("b.img", 2 * GiB, base)).digest;
    // positive control: the same content written again gives the same digest
    expect(imageDigest(sparse("b2.img", 2 * GiB, base)).digest).toBe(d0);
    const flipped = data(70000, 4);
    flipped[69999] = flipped[69999]! ^ 0x01 || 7;
    const variants = [
      sparse("c1.img", 2 * GiB, [base[0]!, [GiB, flipped]]),
      sparse("c2.img", 2 * GiB, [...base, [1.5 * GiB, new Uint8Array([1])]]), // a byte in a hole
      sparse("c3.img", 2 * GiB, [base[0]!, [GiB, data(70000, 4)], [GiB + 100, new Uint8Array(1)]]), // a byte zeroed
      sparse("c4.img", 2 * GiB + 4096, base), // size only
    ];
    for (const v of variants) expect(imageDigest(v).digest).not.toBe(d0);
  });

  test("a hole and written zeros digest the same", () => {
    const a = sparse("z1.img", 1024 * 1024, [[0, data(100, 5)]]);
    const b = sparse("z2.img", 1024 * 1024, [
      [0, data(100, 5)],
      [200000, new Uint8Array(300000)], // zeros, allocated
    ]);
    expect(statSync(b).blocks).toBeGreaterThan(statSync(a).blocks);
    expect(imageDigest(b).digest).toBe(imageDigest(a).digest);
  });
});

describe("cloneImage + verifyContent", () => {
  test("a sparse copy verifies; a flipped byte in the copy is SNAPSHOT_CORRUPT", async () => {
    const src = sparse("src.img", 2 * GiB, [
      [4096, data(300000, 6)],
      [GiB, data(5000, 7)],
    ]);
    const want = imageDigest(src);
    const dst = join(dir, "dst.img");
    const method = await cloneImage(src, dst);
    expect(["reflink", "sparse_copy"]).toContain(method);
    expect(statSync(dst).size).toBe(2 * GiB);
    expect(statSync(dst).blocks * 512).toBeLessThan(16 * 1024 * 1024);
    const recorded = { digest: want.digest, image_bytes: want.size };
    await verifyContent(dst, recorded, "s1"); // positive control
    const fd = openSync(dst, "r+");
    writeSync(fd, new Uint8Array([0x55]), 0, 1, GiB + 17);
    closeSync(fd);
    await expect(verifyContent(dst, recorded, "s1")).rejects.toMatchObject({ code: "SNAPSHOT_CORRUPT" });
  });

  test("a tar digest (sha256:) is checked the same way", async () => {
    const { fileSha256 } = await import("../src/manager/disk-image.ts");
    const p = join(dir, "t.tar");
    writeFileSync(p, data(5000, 8));
    const rec = { digest: await fileSha256(p), image_bytes: 5000 };
    await verifyContent(p, rec, "t");
    writeFileSync(p, data(5000, 9));
    await expect(verifyContent(p, rec, "t")).rejects.toMatchObject({ code: "SNAPSHOT_CORRUPT" });
  });
});

describe("temp files and swaps", () => {
  test("sweepTemps removes a dead writer's temp files, keeps live ones and everything else", async () => {
    const d = join(dir, "sweep");
    mkdirSync(d);
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    writeFileSync(join(d, `disk.ext4.new-${dead.pid}`), "x");
    mkdirSync(join(d, `root.new-${dead.pid}`));
    writeFileSync(join(d, `a.img.tmp-${process.pid}`), "x");
    writeFileSync(join(d, "disk.ext4"), "x");
    sweepTemps(d);
    expect(existsSync(join(d, `disk.ext4.new-${dead.pid}`))).toBe(false);
    expect(existsSync(join(d, `root.new-${dead.pid}`))).toBe(false);
    expect(existsSync(join(d, `a.img.tmp-${process.pid}`))).toBe(true);
    expect(existsSync(join(d, "disk.ext4"))).toBe(true);
  });

  test("exchangePaths swaps two directories", () => {
    const a = join(dir, "xa");
    const b = join(dir, "xb");
    mkdirSync(a);
    mkdirSync(b);
    writeFileSync(join(a, "f"), "A");
    writeFileSync(join(b, "f"), "B");
    exchangePaths(a, b);
    expect(readFileSync(join(a, "f"), "utf8")).toBe("B");
    expect(readFileSync(join(b, "f"), "utf8")).toBe("A");
  });
});
