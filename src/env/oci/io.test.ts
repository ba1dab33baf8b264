import { afterAll, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compress, decompress, readChunks, SparseWriter } from "./io.ts";

const dir = await mkdtemp(join(tmpdir(), "pyro-oci-io-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

test("SparseWriter writes identical bytes and leaves zero blocks as holes", async () => {
  const size = 9 * (1 << 20) + 1234; // not block aligned, with a non-zero tail
  const data = Buffer.alloc(size);
  data.write("head", 0);
  data.fill(7, 3 << 20, (3 << 20) + 5000); // straddles block boundaries
  data.write("tail", size - 4);
  const path = join(dir, "sparse");
  const w = await SparseWriter.create(path);
  for (let off = 0; off < size; off += 333_333)
    await w.write(data.subarray(off, Math.min(size, off + 333_333)));
  await w.close();
  expect(Buffer.compare(await readFile(path), data)).toBe(0);
  expect((await stat(path)).blocks * 512).toBeLessThan(256 << 10);
});

test("SparseWriter keeps trailing zeros as length", async () => {
  const path = join(dir, "trailing");
  const w = await SparseWriter.create(path);
  await w.write(Buffer.from("x"));
  await w.write(Buffer.alloc(3 << 20));
  await w.close();
  expect((await stat(path)).size).toBe(1 + (3 << 20));
});

test("zstd and gzip compression is deterministic and round-trips", async () => {
  const path = join(dir, "data");
  await Bun.write(
    path,
    Buffer.concat([Buffer.alloc(3 << 20), crypto.getRandomValues(new Uint8Array(50_000))]),
  );
  for (const c of ["zstd", "gzip"] as const) {
    const once = async () => {
      const parts: Uint8Array[] = [];
      for await (const chunk of compress(readChunks(path), c)) parts.push(chunk);
      return Buffer.concat(parts);
    };
    const a = await once();
    await Bun.write(`${path}.c`, a);
    expect(Buffer.compare(a, await once())).toBe(0);
    const parts: Uint8Array[] = [];
    for await (const chunk of decompress(readChunks(`${path}.c`), c)) parts.push(chunk);
    expect(Buffer.compare(Buffer.concat(parts), await readFile(path))).toBe(0);
  }
});
