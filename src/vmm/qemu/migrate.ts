/**
 * A running QEMU machine's full state (RAM + devices) to a file and back, through QEMU's
 * migration stream on a UNIX socket (QEMU 7.2 has no `file:` URI, and `exec:` would run a
 * shell string: never used).
 *
 * Save: the VM is stopped first (one pass, nothing dirtied meanwhile); pyro listens on
 * `sockPath` and writes every byte QEMU sends to `outPath`, hashing as it goes; QEMU is told
 * `migrate unix:<sockPath>` and the save ends when QMP says `completed` and the socket has
 * closed. QEMU flushes its block devices before it completes, so the data disk on the host
 * matches the saved RAM.
 * Load: QEMU was started with `-incoming defer` and the same device configuration; it is told
 * `migrate-incoming unix:<sockPath>` (it listens), pyro connects and streams the file in, and
 * the load ends when the VM runs again (QEMU starts it itself once the state is in).
 * Invariant: a failure leaves QEMU's own status (`failed`) in the error, never a half-saved
 * file presented as whole: callers write to a temporary name and rename after success.
 */
import { closeSync, createReadStream, fsyncSync, openSync, rmSync, writeSync } from "node:fs";
import { createConnection } from "node:net";
import { mark } from "../../base/profile.ts";
import { PyroError } from "../../protocol/errors.ts";
import type { QmpClient } from "./qmp.ts";

export interface SavedState {
  bytes: number;
  sha256: string;
}

interface MigrateInfo {
  status?: string;
  "error-desc"?: string;
}

/** Poll query-migrate until the migration ends; returns its final info. */
async function waitMigration(qmp: QmpClient, deadlineMs: number, what: string): Promise<MigrateInfo> {
  for (;;) {
    const info = await qmp.execute<MigrateInfo>("query-migrate");
    if (info.status === "completed") return info;
    if (info.status === "failed" || info.status === "cancelled") {
      throw new PyroError(
        "VMM_FAILED",
        `${what} ${info.status}: ${info["error-desc"] ?? "no reason given"}`,
        {
          details: { migration: info },
        },
      );
    }
    if (Date.now() > deadlineMs) {
      await qmp.execute("migrate_cancel").catch(() => {});
      throw new PyroError("VMM_FAILED", `${what} did not finish in time (status ${info.status ?? "none"})`);
    }
    await Bun.sleep(50);
  }
}

/**
 * `x-ignore-shared`: RAM in a shared memory file (a VM template's, share=on) stays out of the
 * stream; the loading side must set it too (it then expects no pages for that block and keeps
 * what its file mapping holds). A per-process setting: set explicitly on every save and load,
 * so a clone's later pause (its RAM private, never "shared") saves whole either way.
 */
async function setIgnoreShared(qmp: QmpClient, on: boolean): Promise<void> {
  await qmp.execute("migrate-set-capabilities", {
    capabilities: [{ capability: "x-ignore-shared", state: on }],
  });
}

/** No bandwidth cap: the stream goes to a local file, not over a network. */
async function uncap(qmp: QmpClient): Promise<void> {
  await qmp.execute("migrate-set-parameters", { "max-bandwidth": 1024 * 1024 * 1024 * 1024 });
}

export async function saveVmState(
  qmp: QmpClient,
  sockPath: string,
  outPath: string,
  deadlineMs: number,
  opts: { ignoreShared?: boolean } = {},
): Promise<SavedState> {
  rmSync(sockPath, { force: true });
  const fd = openSync(outPath, "w", 0o600);
  const hasher = new Bun.CryptoHasher("sha256");
  let bytes = 0;
  let writeError: Error | null = null;
  let done!: () => void;
  const closed = new Promise<void>((r) => (done = r));
  // Synchronous writes: the page cache absorbs them, and QEMU waits while we write (backpressure).
  const server = Bun.listen({
    unix: sockPath,
    socket: {
      data(_sock, data) {
        if (writeError) return;
        try {
          let off = 0;
          while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off);
          hasher.update(data);
          bytes += data.byteLength;
        } catch (err) {
          writeError = err as Error;
        }
      },
      close() {
        done();
      },
      error() {
        done();
      },
    },
  });
  try {
    await qmp.execute("stop");
    await uncap(qmp);
    await setIgnoreShared(qmp, opts.ignoreShared ?? false);
    await qmp.execute("migrate", { uri: `unix:${sockPath}` });
    await waitMigration(qmp, deadlineMs, "saving the machine state");
    await Promise.race([
      closed,
      Bun.sleep(Math.max(deadlineMs - Date.now(), 1000)).then(() => {
        throw new PyroError("VMM_FAILED", "QEMU did not close the migration stream");
      }),
    ]);
    if (writeError) throw new PyroError("IO_ERROR", `writing the machine state failed: ${writeError}`);
    fsyncSync(fd);
    return { bytes, sha256: hasher.digest("hex") };
  } finally {
    server.stop(true);
    closeSync(fd);
    rmSync(sockPath, { force: true });
  }
}

/** Stream `inPath` into a QEMU started with `-incoming defer`; resolves once the VM runs. */
export async function loadVmState(
  qmp: QmpClient,
  sockPath: string,
  inPath: string,
  deadlineMs: number,
  opts: { ignoreShared?: boolean } = {},
): Promise<void> {
  rmSync(sockPath, { force: true });
  await setIgnoreShared(qmp, opts.ignoreShared ?? false);
  await qmp.execute("migrate-incoming", { uri: `unix:${sockPath}` });
  try {
    await new Promise<void>((resolve, reject) => {
      const sock = createConnection({ path: sockPath });
      const file = createReadStream(inPath);
      const fail = (err: Error) => {
        file.destroy();
        sock.destroy();
        reject(new PyroError("VMM_FAILED", `streaming the machine state into QEMU failed: ${err.message}`));
      };
      sock.on("error", fail);
      file.on("error", fail);
      sock.on("connect", () => file.pipe(sock));
      sock.on("finish", () => resolve());
    });
    mark("migrate.streamed");
    // Done when the VM runs (QEMU starts it once the state is in); a failed load says so.
    for (;;) {
      const s = await qmp.queryStatus();
      if (s.running) return;
      const m = await qmp.execute<MigrateInfo>("query-migrate");
      if (m.status === "failed" || m.status === "cancelled") {
        throw new PyroError(
          "VMM_FAILED",
          `loading the machine state ${m.status}: ${m["error-desc"] ?? "no reason given"}`,
        );
      }
      // A VM left stopped after a complete load is started here.
      if (m.status === "completed" && (s.status === "paused" || s.status === "postmigrate"))
        await qmp.execute("cont");
      if (Date.now() > deadlineMs) throw new PyroError("VMM_FAILED", `the restored VM is ${s.status}`);
      await Bun.sleep(5);
    }
  } finally {
    rmSync(sockPath, { force: true });
  }
}
