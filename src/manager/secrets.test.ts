import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PyroError } from "../protocol/errors.ts";
import { loadSecrets, resolveSecrets, secretDigests, storeSecrets } from "./secrets.ts";

const dir = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? tmpdir(), "secrets-unit-"));
const codeOf = (f: () => unknown) => {
  try {
    f();
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(PyroError);
    expect(JSON.stringify((err as PyroError).toJSON())).not.toContain("hunter2-value");
    return (err as PyroError).code;
  }
};

describe("resolveSecrets", () => {
  test("literal and file values; one trailing newline (LF or CRLF) dropped from a file", () => {
    writeFileSync(join(dir, "lf"), "from-file\n");
    writeFileSync(join(dir, "crlf"), "from-crlf\r\n");
    writeFileSync(join(dir, "two"), "two-newlines\n\n");
    expect(
      resolveSecrets([
        { name: "A", value: "literal" },
        { name: "B", file_path: join(dir, "lf") },
        { name: "C", file_path: join(dir, "crlf") },
        { name: "_d9", file_path: join(dir, "two") },
      ]),
    ).toEqual([
      { name: "A", value: "literal" },
      { name: "B", value: "from-file" },
      { name: "C", value: "from-crlf" },
      { name: "_d9", value: "two-newlines\n" },
    ]);
    expect(resolveSecrets(undefined)).toEqual([]);
  });

  test("bad input: stable codes, and no error carries the value", () => {
    mkdirSync(join(dir, "adir"), { recursive: true });
    writeFileSync(join(dir, "big"), "x".repeat(64 * 1024 + 1));
    writeFileSync(join(dir, "binary"), Buffer.from([0xff, 0xfe, 0x00]));
    writeFileSync(join(dir, "empty"), "\n");
    const v = "hunter2-value";
    expect(codeOf(() => resolveSecrets([{ name: "A", value: v }]))).toBeNull(); // probe
    expect(codeOf(() => resolveSecrets([{ name: "1A", value: v }]))).toBe("INVALID_INPUT");
    expect(codeOf(() => resolveSecrets([{ name: "A-B", value: v }]))).toBe("INVALID_INPUT");
    expect(codeOf(() => resolveSecrets([{ name: "A".repeat(65), value: v }]))).toBe("INVALID_INPUT");
    expect(codeOf(() => resolveSecrets([{ name: "A", value: "" }]))).toBe("INVALID_INPUT");
    expect(codeOf(() => resolveSecrets([{ name: "A", value: `${v}\0` }]))).toBe("INVALID_INPUT");
    expect(
      codeOf(() =>
        resolveSecrets([
          { name: "A", value: v },
          { name: "A", value: v },
        ]),
      ),
    ).toBe("INVALID_INPUT");
    expect(codeOf(() => resolveSecrets([{ name: "A", value: "y".repeat(64 * 1024 + 1) }]))).toBe(
      "INPUT_TOO_LARGE",
    );
    const many = Array.from({ length: 33 }, (_, i) => ({ name: `S${i}`, value: v }));
    expect(codeOf(() => resolveSecrets(many))).toBe("INPUT_TOO_LARGE");
    const heavy = Array.from({ length: 3 }, (_, i) => ({ name: `S${i}`, value: "z".repeat(60 * 1024) }));
    expect(codeOf(() => resolveSecrets(heavy))).toBe("INPUT_TOO_LARGE");
    expect(codeOf(() => resolveSecrets([{ name: "A", file_path: join(dir, "big") }]))).toBe(
      "INPUT_TOO_LARGE",
    );
    expect(codeOf(() => resolveSecrets([{ name: "A", file_path: join(dir, "missing") }]))).toBe(
      "FILE_NOT_FOUND",
    );
    expect(codeOf(() => resolveSecrets([{ name: "A", file_path: join(dir, "adir") }]))).toBe(
      "IS_A_DIRECTORY",
    );
    expect(codeOf(() => resolveSecrets([{ name: "A", file_path: join(dir, "binary") }]))).toBe(
      "INVALID_INPUT",
    );
    expect(codeOf(() => resolveSecrets([{ name: "A", file_path: join(dir, "empty") }]))).toBe(
      "INVALID_INPUT",
    );
  });
});

describe("the sealed store", () => {
  test("round trip; files 0600 hold no plaintext; the record keeps sha256 digests", () => {
    const home = mkdtempSync(join(dir, "home-"));
    const id = "ws_0123456789ab";
    mkdirSync(join(home, "workspaces", id), { recursive: true });
    const list = [
      { name: "TOKEN", value: "tok-plain-value-123" },
      { name: "OTHER", value: "another-plain-value" },
    ];
    expect(loadSecrets(home, id)).toEqual([]);
    storeSecrets(home, id, list);
    expect(loadSecrets(home, id)).toEqual(list);
    const wsDir = join(home, "workspaces", id);
    const files = readdirSync(wsDir).sort();
    expect(files).toEqual(["secrets.key", "secrets.sealed"]);
    for (const f of files) {
      expect(statSync(join(wsDir, f)).mode & 0o777).toBe(0o600);
      const bytes = readFileSync(join(wsDir, f));
      for (const s of list) {
        expect(bytes.indexOf(s.value)).toBe(-1);
        expect(bytes.indexOf(Buffer.from(s.value).toString("base64"))).toBe(-1);
      }
    }
    expect(secretDigests(list)[0]).toEqual({
      name: "TOKEN",
      sha256: createHash("sha256").update("tok-plain-value-123").digest("hex"),
    });
    // a damaged store is WORKSPACE_CORRUPT, not a crash or a wrong value
    writeFileSync(join(wsDir, "secrets.key"), Buffer.alloc(32));
    expect(codeOf(() => loadSecrets(home, id))).toBe("WORKSPACE_CORRUPT");
  });
});
