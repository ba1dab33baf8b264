/**
 * Streaming file helpers. Environments are hundreds of MB, so nothing here holds a whole
 * file: reads come in fixed-size chunks (fixed so that compressing the same file twice
 * yields the same bytes, which push relies on), and writes skip all-zero blocks so a
 * pulled rootfs stays sparse like the one that was built.
 */
import { type FileHandle, open } from "node:fs/promises";
import { formatBytes, type ProgressSink } from "../../base/progress.ts";
import type { Compression } from "./artifact.ts";

export const READ_CHUNK = 1 << 20;
const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** Read `path` from `start` in fixed-size chunks (a fresh buffer each: consumers may keep them). */
export async function* readChunks(
  path: string,
  start = 0,
  chunkSize = READ_CHUNK,
): AsyncGenerator<Uint8Array> {
  const fh = await open(path, "r");
  try {
    let pos = start;
    for (;;) {
      const buf = new Uint8Array(chunkSize);
      const { bytesRead } = await fh.read(buf, 0, chunkSize, pos);
      if (bytesRead === 0) return;
      pos += bytesRead;
      yield bytesRead === chunkSize ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/** Pull-based stream over an async iterable, so backpressure reaches the file reader. */
function toStream(src: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = src[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      const next = await it.next();
      if (next.done) ctrl.close();
      else ctrl.enqueue(next.value);
    },
    async cancel(reason) {
      await it.return?.(reason);
    },
  });
}

// bun-types' (De)CompressionStream does not unify with ReadableStream<Uint8Array>.pipeThrough.
type Codec = TransformStream<Uint8Array, Uint8Array>;

/** Web streams do the (de)compression: Bun ships gzip and zstd in CompressionStream. */
export function compress(src: AsyncIterable<Uint8Array>, c: Compression): AsyncIterable<Uint8Array> {
  if (c === "none") return src;
  return toStream(src).pipeThrough(new CompressionStream(c) as unknown as Codec);
}

export function decompress(src: AsyncIterable<Uint8Array>, c: Compression): AsyncIterable<Uint8Array> {
  if (c === "none") return src;
  return toStream(src).pipeThrough(new DecompressionStream(c) as unknown as Codec);
}

/** sha256 + byte count of a stream, passing chunks through. */
export class Digester {
  private readonly hasher = new Bun.CryptoHasher("sha256");
  size = 0;
  update(chunk: Uint8Array): void {
    this.hasher.update(chunk);
    this.size += chunk.byteLength;
  }
  hex(): string {
    return this.hasher.digest("hex");
  }
}

/**
 * Writes a file sequentially, seeking over 4 KiB blocks that are all zero instead of writing
 * them (the final ftruncate sets the length), so zeros become holes on the destination.
 */
export class SparseWriter {
  private pending = Buffer.alloc(READ_CHUNK);
  private used = 0;
  private flushed = 0;

  private constructor(private readonly fh: FileHandle) {}

  static async create(path: string): Promise<SparseWriter> {
    return new SparseWriter(await open(path, "w", 0o644));
  }

  get size(): number {
    return this.flushed + this.used;
  }

  async write(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.byteLength) {
      const n = Math.min(chunk.byteLength - off, this.pending.length - this.used);
      this.pending.set(chunk.subarray(off, off + n), this.used);
      this.used += n;
      off += n;
      if (this.used === this.pending.length) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    // `flushed` is always a multiple of READ_CHUNK here, so blocks align with the file's.
    let runStart = -1;
    for (let i = 0; i < this.used; i += BLOCK) {
      const end = Math.min(i + BLOCK, this.used);
      const zero = this.pending.subarray(i, end).equals(ZERO_BLOCK.subarray(0, end - i));
      if (!zero && runStart < 0) runStart = i;
      else if (zero && runStart >= 0) {
        await this.writeRange(runStart, i);
        runStart = -1;
      }
    }
    if (runStart >= 0) await this.writeRange(runStart, this.used);
    this.flushed += this.used;
    this.used = 0;
  }

  private async writeRange(from: number, to: number): Promise<void> {
    while (from < to) {
      const { bytesWritten } = await this.fh.write(this.pending, from, to - from, this.flushed + from);
      from += bytesWritten;
    }
  }

  /** Flush, set the final length (trailing holes), fsync and close. */
  async close(): Promise<void> {
    try {
      await this.flush();
      await this.fh.truncate(this.flushed);
      await this.fh.sync();
    } finally {
      await this.fh.close();
    }
  }

  /** Close without caring about the content (error paths). */
  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
  }
}

export { formatBytes };

/**
 * Progress of a byte count for a sink (src/base/progress.ts): a report with the structured
 * event at most every `everyMs`, and always the final one.
 */
export function progressReporter(
  onProgress: ProgressSink | undefined,
  label: string,
  total: number,
  everyMs = 500,
  now: () => number = Date.now,
): (done: number) => void {
  let last = Number.NEGATIVE_INFINITY;
  return (done) => {
    if (!onProgress) return;
    const t = now();
    if (done === total || t - last >= everyMs) {
      last = t;
      onProgress(`${label}: ${formatBytes(done)} / ${formatBytes(total)}`, {
        step: label,
        done,
        total,
        unit: "bytes",
      });
    }
  };
}
