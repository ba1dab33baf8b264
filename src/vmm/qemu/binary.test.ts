import { expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PyroError } from "../../protocol/errors.ts";
import { findQemu, parseQemuVersion, requireQemu } from "./binary.ts";

test("parseQemuVersion", () => {
  expect(parseQemuVersion("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright")).toBe(
    "7.2.22",
  );
  expect(parseQemuVersion("QEMU emulator version 9.1\n")).toBe("9.1");
  expect(parseQemuVersion("something else")).toBeNull();
});

test("findQemu: PYRO_QEMU_BIN wins, else PATH, else null", () => {
  const dir = mkdtempSync(join(tmpdir(), "pyro-qbin-"));
  try {
    const fake = join(dir, "qemu-system-x86_64");
    writeFileSync(fake, "#!/bin/sh\n");
    chmodSync(fake, 0o755);
    const mine = join(dir, "my-qemu");
    writeFileSync(mine, "#!/bin/sh\n");
    chmodSync(mine, 0o755);
    expect(findQemu({ PATH: dir })).toBe(fake);
    expect(findQemu({ PATH: dir, PYRO_QEMU_BIN: mine })).toBe(mine);
    expect(findQemu({ PATH: "/nonexistent" })).toBeNull();
    expect(findQemu({ PATH: dir, PYRO_QEMU_BIN: join(dir, "missing") })).toBeNull();
    const err = (() => {
      try {
        requireQemu({ PATH: "/nonexistent" });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(PyroError);
    expect((err as PyroError).code).toBe("VMM_NOT_FOUND");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
