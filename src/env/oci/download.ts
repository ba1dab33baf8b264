/**
 * Resumable, verified blob download for pull: the blob streams to a `.partial` file so an
 * interruption costs only what was not yet received.
 */
import { open, rm, stat } from "node:fs/promises";
import { PyroError } from "../../protocol/errors.ts";
import type { Descriptor } from "./artifact.ts";
import type { RegistryClient } from "./client.ts";
import { Digester, formatBytes, progressReporter, readChunks } from "./io.ts";

type Say = (line: string) => void;

/**
 * Download a blob to `path`, continuing an existing partial file with a Range request.
 * A server that ignores Range (200 instead of 206) restarts it; a resumed file that fails
 * verification is discarded and downloaded once more from scratch before calling it corrupt.
 */
export async function downloadBlob(
  client: RegistryClient,
  desc: Descriptor,
  path: string,
  kind: string,
  say: Say,
  onProgress?: Say,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    let d = new Digester();
    let have = (await stat(path).catch(() => undefined))?.size ?? 0;
    if (have > desc.size) {
      await rm(path, { force: true });
      have = 0;
    }
    if (have > 0) for await (const chunk of readChunks(path)) d.update(chunk); // the hash covers the whole blob
    let resumed = have > 0;
    if (have < desc.size) {
      const ctrl = new AbortController();
      let last = Date.now();
      const watchdog = setInterval(
        () => Date.now() - last > client.stallTimeoutMs && ctrl.abort(),
        Math.min(1000, client.stallTimeoutMs),
      );
      try {
        const res = await client.getBlob(desc.digest, have, ctrl.signal);
        let flags = "w";
        if (
          have > 0 &&
          res.status === 206 &&
          res.headers.get("content-range")?.startsWith(`bytes ${have}-`)
        ) {
          flags = "a";
          say(`${kind}: resuming download at ${formatBytes(have)} of ${formatBytes(desc.size)}`);
        } else if (have > 0) {
          say(`${kind}: registry does not support resuming; downloading from the start`);
          d = new Digester();
          have = 0;
          resumed = false;
        } else {
          say(`${kind}: downloading ${formatBytes(desc.size)}`);
        }
        if (res.status === 206 && flags === "w") {
          await res.body?.cancel();
          throw new PyroError(
            "REGISTRY_ERROR",
            `registry sent a partial response for ${desc.digest} that was not asked for`,
          );
        }
        const progress = progressReporter(onProgress, `${kind}: downloaded`, desc.size);
        const fh = await open(path, flags);
        try {
          for await (const chunk of res.body ?? []) {
            last = Date.now();
            have += chunk.byteLength;
            d.update(chunk);
            if (have > desc.size) break; // longer than described: fails verification below
            await writeAll(fh, chunk);
            progress(have);
          }
        } finally {
          await fh.close();
        }
      } catch (err) {
        if (err instanceof PyroError) throw err;
        const why = ctrl.signal.aborted
          ? `no data for ${client.stallTimeoutMs / 1000}s`
          : client.redact(String(err));
        throw new PyroError("REGISTRY_ERROR", `download of ${kind} layer interrupted (${why})`, {
          hint: "run the pull again: it resumes where it stopped",
          cause: err,
        });
      } finally {
        clearInterval(watchdog);
      }
      if (have < desc.size) {
        throw new PyroError(
          "REGISTRY_ERROR",
          `download of ${kind} layer ended early (${have} of ${desc.size} bytes)`,
          {
            hint: "run the pull again: it resumes where it stopped",
          },
        );
      }
    }
    if (have === desc.size && `sha256:${d.hex()}` === desc.digest) return;
    await rm(path, { force: true });
    if (!resumed || attempt > 0) {
      throw new PyroError(
        "ENVIRONMENT_CORRUPT",
        `${kind} blob ${desc.digest} from the registry does not match its digest`,
        {
          details: { digest: desc.digest },
        },
      );
    }
    say(`${kind}: resumed download did not verify; downloading again from the start`);
  }
}

export async function writeAll(fh: Awaited<ReturnType<typeof open>>, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) off += (await fh.write(chunk, off, chunk.byteLength - off)).bytesWritten;
}
