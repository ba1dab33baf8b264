/**
 * gzip is sniffed, not declared: seeds arrive as .tar, .tar.gz or .tgz, and `sync push`
 * may send either, so the importer looks at the first two bytes (1f 8b) and inflates with
 * the platform's DecompressionStream when they match.
 */
import { PyroError } from "../errors.ts";
import { type ByteSource, iteratorStream } from "./bytes.ts";

async function* replay(head: Uint8Array[], it: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* head;
  for (;;) {
    const r = await it.next();
    if (r.done) return;
    yield r.value;
  }
}

async function* gunzipIfNeeded(source: ByteSource): AsyncGenerator<Uint8Array> {
  const it = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  try {
    const head: Uint8Array[] = [];
    let len = 0;
    while (len < 2) {
      const r = await it.next();
      if (r.done) break;
      head.push(r.value);
      len += r.value.length;
    }
    const first = head.find((c) => c.length > 0);
    const second = first && first.length > 1 ? first[1] : head.find((c) => c !== first && c.length > 0)?.[0];
    if (first?.[0] !== 0x1f || second !== 0x8b) {
      yield* replay(head, it);
      return;
    }
    // (the cast papers over lib.dom's ArrayBuffer-vs-ArrayBufferLike generics)
    const gunzip = new DecompressionStream("gzip") as unknown as ReadableWritablePair<Uint8Array, Uint8Array>;
    const inflated = iteratorStream(replay(head, it)).pipeThrough(gunzip);
    try {
      for await (const chunk of inflated) yield chunk;
    } catch (err) {
      if (err instanceof PyroError) throw err;
      throw new PyroError("INVALID_INPUT", `invalid gzip data: ${(err as Error)?.message ?? err}`);
    }
  } finally {
    await it.return?.();
  }
}

/** The source as a byte stream, inflated if it starts with the gzip magic. */
export function maybeGunzip(source: ByteSource): ReadableStream<Uint8Array> {
  return iteratorStream(gunzipIfNeeded(source));
}
