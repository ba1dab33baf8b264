/**
 * A flipped byte in an environment file that keeps its size, mtime and inode is caught
 * before boot (issue 15, part 2). verifyEnvironment caches a full sha256 check by a stamp of
 * the file; the stamp held size + mtime + inode, so `touch -r` after the flip made the
 * corrupted file pass. The stamp now holds the ctime too, which no user call can put back.
 */
import { expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import {
  type EnvironmentManifest,
  fileEntry,
  type InstalledEnvironment,
  verifyEnvironment,
} from "../src/env/store.ts";
import { PyroError } from "../src/protocol/errors.ts";

test("a flipped byte restored to the old size, mtime and inode is ENVIRONMENT_CORRUPT at the next verify", async () => {
  const dir = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "env-"));
  writeFileSync(join(dir, "vmlinux"), Buffer.alloc(64 * 1024, 1));
  writeFileSync(join(dir, "rootfs.ext4"), Buffer.alloc(256 * 1024, 2));
  const env: InstalledEnvironment = {
    dir,
    manifest: {
      name: "test:1",
      kernel: await fileEntry(dir, "vmlinux"),
      rootfs: await fileEntry(dir, "rootfs.ext4"),
    } as unknown as EnvironmentManifest,
  };
  await verifyEnvironment(env); // the probe: intact files pass (and the stamp is written)
  await verifyEnvironment(env);

  const p = join(dir, "rootfs.ext4");
  const before = statSync(p, { bigint: true });
  const fd = openSync(p, "r+");
  writeSync(fd, Buffer.from([0xff]), 0, 1, 1000);
  closeSync(fd);
  // touch -r: put the mtime back, to the nanosecond
  const ns = before.mtimeNs;
  const at = `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, "0")}`;
  expect(Bun.spawnSync(["touch", "-m", "-d", at, p]).exitCode).toBe(0);
  const after = statSync(p, { bigint: true });
  expect([after.size, after.mtimeNs, after.ino]).toEqual([before.size, before.mtimeNs, before.ino]);

  const err = await verifyEnvironment(env).then(
    () => null,
    (e) => e,
  );
  expect(err).toBeInstanceOf(PyroError);
  expect((err as PyroError).code).toBe("ENVIRONMENT_CORRUPT");
  expect((err as PyroError).message).toContain("rootfs.ext4 does not match its sha256 digest");
});
