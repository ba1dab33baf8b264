/**
 * Pull bytes out of a chunked source with arbitrary chunk boundaries. Reads hand out
 * subarrays of the source's chunks where they can (no copy), and copy only to join a
 * fixed-size read (a 512-byte header) that straddles chunks, so memory stays bounded.
 */
import { PyroError } from "../errors.ts";

export type ByteSource = AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>;

const EMPTY = new Uint8Array(0);

export class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private buf: Uint8Array = EMPTY;
  private pos = 0;
  private eof = false;
  /** total bytes consumed, for error messages */
  offset = 0;

  constructor(source: ByteSource) {
    // Bun's ReadableStream is async-iterable, and its iterator's return() cancels it.
    this.it = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  }

  /** Up to n bytes (n > 0) from the current chunk; undefined at end of input. */
  async readUpTo(n: number): Promise<Uint8Array | undefined> {
    // the refill loop is inlined: with a fragmenting transport this runs once per chunk
    while (this.pos >= this.buf.length) {
      if (this.eof) return undefined;
      const r = await this.it.next();
      if (r.done) {
        this.eof = true;
        return undefined;
      }
      if (!(r.value instanceof Uint8Array)) {
        throw new PyroError("INVALID_INPUT", "archive stream yielded a non-byte chunk");
      }
      this.buf = r.value;
      this.pos = 0;
    }
    const take = Math.min(n, this.buf.length - this.pos);
    const out = this.buf.subarray(this.pos, this.pos + take);
    this.pos += take;
    this.offset += take;
    return out;
  }

  /** Exactly n bytes, or undefined if the input ends first (`got` tells how many arrived). */
  async readExact(n: number): Promise<{ bytes?: Uint8Array; got: number }> {
    const first = await this.readUpTo(n);
    if (!first) return { got: 0 };
    if (first.length === n) return { bytes: first, got: n };
    const out = new Uint8Array(n);
    out.set(first, 0);
    let got = first.length;
    while (got < n) {
      const more = await this.readUpTo(n - got);
      if (!more) return { got };
      out.set(more, got);
      got += more.length;
    }
    return { bytes: out, got };
  }

  /** Discard n bytes; false if the input ended first. */
  async skip(n: number): Promise<boolean> {
    let left = n;
    while (left > 0) {
      const chunk = await this.readUpTo(left);
      if (!chunk) return false;
      left -= chunk.length;
    }
    return true;
  }

  /** Stop reading: cancels a stream source, runs an iterator's cleanup. */
  async close(): Promise<void> {
    if (this.eof) return;
    this.eof = true;
    try {
      await this.it.return?.();
    } catch {
      // the source's own cancellation failing is not the reader's problem
    }
  }
}

/** A pull-driven stream over an async iterator: nothing is produced until asked for. */
export function iteratorStream(
  it: AsyncIterator<Uint8Array>,
  onError?: (err: unknown) => unknown,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const r = await it.next();
          if (r.done) controller.close();
          else controller.enqueue(r.value);
        } catch (err) {
          controller.error(onError ? onError(err) : err);
        }
      },
      async cancel() {
        await it.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}
