import { describe, expect, test } from "bun:test";
import { HEADROOM_MIB, imageInodes, imageSizeMib } from "./rootfs.ts";

describe("image sizing", () => {
  test("tree plus headroom, rounded up to 64 MiB", () => {
    const mib = 1024 * 1024;
    expect(imageSizeMib(0)).toBe(HEADROOM_MIB);
    expect(imageSizeMib(283 * mib)).toBe(576);
    expect(imageSizeMib(283 * mib) % 64).toBe(0);
    expect(imageSizeMib(283 * mib)).toBeGreaterThanOrEqual(283 + HEADROOM_MIB);
  });
  test("inodes: half again the file count, at least 16384", () => {
    expect(imageInodes(10)).toBe(16384);
    expect(imageInodes(40000)).toBeGreaterThanOrEqual(60000);
  });
});
