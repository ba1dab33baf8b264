/**
 * Workspace secrets on the host: checked and read at create, kept sealed in the workspace's
 * directory, loaded by the supervisor at every boot (it sends them to the agent with
 * secrets.set and redacts them from everything it relays or writes; src/manager/redact.ts).
 *
 * Invariants:
 * - Every secret of a create is checked (name, duplicates, size, count, file readable) before
 *   anything is made, and no error message carries a value.
 * - The record keeps only names and sha256 digests (`secrets`); the values are in
 *   `secrets.sealed` (AES-256-GCM) with the key in `secrets.key` beside it, both 0600 and
 *   written atomically, removed with the workspace. The sealing keeps values out of anything
 *   that reads or copies files under PYRO_HOME (a grep, a backup, a support bundle); it is
 *   no protection from a process running as the same user, which can read the key too.
 * - A `file_path` secret is the file's content with one trailing newline (\n or \r\n)
 *   removed, as it must be valid UTF-8 without NUL bytes (it becomes an environment variable).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { PyroError, toPyroError } from "../protocol/errors.ts";
import {
  SECRET_MAX_BYTES,
  SECRET_NAME_RE,
  SECRETS_MAX_COUNT,
  SECRETS_MAX_TOTAL_BYTES,
} from "../protocol/limits.ts";
import { writeFileAtomic } from "./atomic.ts";
import { workspaceDir } from "./paths.ts";
import { Redactor, type SecretValue } from "./redact.ts";

/** As workspace_create takes them: a literal value or a host file to read it from. */
export type SecretInput = { name: string; value: string } | { name: string; file_path: string };

const keyPath = (home: string, id: string) => join(workspaceDir(home, id), "secrets.key");
const sealedPath = (home: string, id: string) => join(workspaceDir(home, id), "secrets.sealed");

const utf8 = new TextDecoder("utf-8", { fatal: true });

function readSecretFile(name: string, path: string): string {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    const e = toPyroError(err);
    throw new PyroError(e.code, `secret ${name}: cannot read ${path} (${e.message.split(":")[0]})`, {
      details: { name, file_path: path },
    });
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory())
      throw new PyroError("IS_A_DIRECTORY", `secret ${name}: ${path} is a directory`, {
        details: { name, file_path: path },
      });
    // One byte past the limit (plus a newline that is dropped) tells "too large" apart.
    const buf = Buffer.alloc(SECRET_MAX_BYTES + 3);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    let bytes = buf.subarray(0, n);
    if (bytes.at(-1) === 0x0a) bytes = bytes.subarray(0, bytes.at(-2) === 0x0d ? -2 : -1);
    if (bytes.length > SECRET_MAX_BYTES) throw tooLarge(name);
    try {
      return utf8.decode(bytes);
    } catch {
      throw new PyroError("INVALID_INPUT", `secret ${name}: ${path} is not UTF-8 text`, {
        details: { name, file_path: path },
      });
    }
  } finally {
    closeSync(fd);
  }
}

function tooLarge(name: string): PyroError {
  return new PyroError("INPUT_TOO_LARGE", `secret ${name} is larger than ${SECRET_MAX_BYTES} bytes`, {
    details: { name, max_bytes: SECRET_MAX_BYTES },
  });
}

/** Check every secret of a create and read the file ones; throws before anything is made. */
export function resolveSecrets(inputs: readonly SecretInput[] | undefined): SecretValue[] {
  const list = inputs ?? [];
  if (list.length > SECRETS_MAX_COUNT)
    throw new PyroError("INPUT_TOO_LARGE", `at most ${SECRETS_MAX_COUNT} secrets per workspace`, {
      details: { count: list.length, max: SECRETS_MAX_COUNT },
    });
  const seen = new Set<string>();
  for (const s of list) {
    if (!SECRET_NAME_RE.test(s.name))
      throw new PyroError(
        "INVALID_INPUT",
        `invalid secret name "${s.name.slice(0, 80)}": use letters, digits and _, not starting with a digit, at most 64 characters`,
        { details: { name: s.name.slice(0, 80) } },
      );
    if (seen.has(s.name))
      throw new PyroError("INVALID_INPUT", `secret ${s.name} is declared twice`, {
        details: { name: s.name },
      });
    seen.add(s.name);
  }
  let total = 0;
  const out = list.map((s): SecretValue => {
    const value = "file_path" in s ? readSecretFile(s.name, s.file_path) : s.value;
    const size = Buffer.byteLength(value);
    if (size > SECRET_MAX_BYTES) throw tooLarge(s.name);
    if (size === 0)
      throw new PyroError("INVALID_INPUT", `secret ${s.name} is empty`, { details: { name: s.name } });
    if (value.includes("\0"))
      throw new PyroError("INVALID_INPUT", `secret ${s.name} contains a NUL byte`, {
        details: { name: s.name },
      });
    total += size;
    return { name: s.name, value };
  });
  if (total > SECRETS_MAX_TOTAL_BYTES)
    throw new PyroError(
      "INPUT_TOO_LARGE",
      `secrets may hold at most ${SECRETS_MAX_TOTAL_BYTES} bytes in all`,
      {
        details: { max_total_bytes: SECRETS_MAX_TOTAL_BYTES },
      },
    );
  return out;
}

/** What the record keeps of each secret. */
export function secretDigests(list: SecretValue[]): Array<{ name: string; sha256: string }> {
  return list.map((s) => ({ name: s.name, sha256: createHash("sha256").update(s.value).digest("hex") }));
}

/** Seal the values into the workspace's directory (nothing is written for none). */
export function storeSecrets(home: string, id: string, list: SecretValue[]): void {
  if (list.length === 0) return;
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  const data = Buffer.concat([cipher.update(JSON.stringify(list), "utf8"), cipher.final()]);
  writeFileAtomic(keyPath(home, id), key, 0o600);
  writeFileAtomic(
    sealedPath(home, id),
    JSON.stringify({
      version: 1,
      cipher: "aes-256-gcm",
      iv: iv.toString("hex"),
      tag: cipher.getAuthTag().toString("hex"),
      data: data.toString("hex"),
    }),
    0o600,
  );
}

/** The workspace's secrets ([] when it has none). */
export function loadSecrets(home: string, id: string): SecretValue[] {
  if (!existsSync(sealedPath(home, id))) return [];
  try {
    const box = JSON.parse(readFileSync(sealedPath(home, id), "utf8"));
    const decipher = createDecipheriv(
      "aes-256-gcm",
      readFileSync(keyPath(home, id)),
      Buffer.from(box.iv, "hex"),
    );
    decipher.setAuthTag(Buffer.from(box.tag, "hex"));
    const plain = Buffer.concat([decipher.update(Buffer.from(box.data, "hex")), decipher.final()]);
    return JSON.parse(plain.toString("utf8")) as SecretValue[];
  } catch (err) {
    throw new PyroError("WORKSPACE_CORRUPT", `the secrets of workspace ${id} cannot be read back`, {
      details: { workspace_id: id, reason: (err as Error).name },
    });
  }
}

/** The redactor for a workspace's secrets, or null when it has none. */
export function workspaceRedactor(home: string, id: string): Redactor | null {
  return Redactor.of(loadSecrets(home, id));
}
