import { describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { INIT_SCRIPT } from "./rootfs.ts";

const INIT_FILE = join(import.meta.dir, "../../../rootfs/init/pyro-init");

describe("pyro-init", () => {
  test("passes sh -n (POSIX syntax, dash on Debian)", () => {
    for (const shell of ["sh", "dash"]) {
      if (!Bun.which(shell)) continue;
      const r = Bun.spawnSync([shell, "-n", INIT_FILE]);
      expect(r.stderr.toString()).toBe("");
      expect(r.exitCode).toBe(0);
    }
  });

  test("is the text baked into the build and is executable in the tree", () => {
    expect(INIT_SCRIPT).toBe(readFileSync(INIT_FILE, "utf8"));
    expect(INIT_SCRIPT.startsWith("#!/bin/sh\n")).toBe(true);
    expect(statSync(INIT_FILE).mode & 0o111).not.toBe(0);
  });

  test("execs tini in front of the agent with the agreed arguments", () => {
    expect(INIT_SCRIPT).toContain('exec /usr/bin/tini -s -g -- "$AGENT" serve --guest');
    expect(INIT_SCRIPT).toContain("AGENT=/usr/local/bin/pyro-agent");
  });
});
