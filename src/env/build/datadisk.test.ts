import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { needs } from "../../../test/capabilities.ts";
import { createDataDisk, DATA_DISK_LABEL } from "./datadisk.ts";

needs("mkfs.ext4").describe("createDataDisk", () => {
  test("8 GiB sparse ext4 labelled pyro-data costs at most 5 MB of host disk", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pyro-datadisk-"));
    try {
      const path = join(dir, "disk.ext4");
      await createDataDisk(path, 8192);
      const st = statSync(path);
      expect(st.size).toBe(8192 * 1024 * 1024);
      expect(st.blocks * 512).toBeLessThanOrEqual(5 * 1000 * 1000);
      const dump = Bun.spawnSync(["dumpe2fs", "-h", path], {
        env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
      });
      const header = dump.stdout.toString();
      expect(header).toContain(`Filesystem volume name:   ${DATA_DISK_LABEL}`);
      expect(header).toMatch(/Filesystem state:\s+clean/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("refuses silly sizes", async () => {
    await expect(createDataDisk("/nonexistent/x", 1)).rejects.toThrow(RangeError);
  });
});
