/**
 * Reading and rewriting a client's JSON config file. Reading accepts JSONC (comments and
 * trailing commas, which OpenCode allows); rewriting is refused for a file that is not plain
 * JSON, because re-serialising it would silently drop the user's comments. A rewrite keeps
 * every key and its order and only sets the one value asked for.
 */
import { PyroError } from "../../protocol/errors.ts";

type Json = Record<string, unknown>;

const isObject = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x);

/** The file's top-level object (JSONC accepted); an empty object for an empty file. */
export function readJsonc(text: string, path: string): Json {
  if (text.trim() === "") return {};
  let data: unknown;
  try {
    data = Bun.JSONC.parse(text);
  } catch (err) {
    throw new PyroError("INVALID_INPUT", `${path} is not valid JSON: ${(err as Error).message}`, {
      details: { path },
      hint: "fix the file (or move it aside) and run the command again",
    });
  }
  if (!isObject(data))
    throw new PyroError("INVALID_INPUT", `${path} does not hold a JSON object`, { details: { path } });
  return data;
}

/** The object at `keys` below `root`, or null when any step is missing or not an object. */
export function getObject(root: Json, keys: string[]): Json | null {
  let at: unknown = root;
  for (const k of keys) {
    if (!isObject(at)) return null;
    at = at[k];
  }
  return isObject(at) ? at : null;
}

/**
 * `text` (null: no file yet) with the value at `keys` replaced by `update(old value)`;
 * intermediate objects are created, everything else is kept. `base` seeds a new file
 * (e.g. OpenCode's `$schema`).
 */
export function setJsonValue(
  text: string | null,
  keys: string[],
  update: (old: Json | null) => unknown,
  path: string,
  base: Json = {},
): string {
  const fresh = text === null || text.trim() === "";
  const root: Json = fresh ? structuredClone(base) : readJsonc(text, path);
  const value = update(getObject(root, keys));
  if (!fresh) {
    try {
      JSON.parse(text);
    } catch {
      throw new PyroError(
        "INVALID_INPUT",
        `${path} has comments or trailing commas; pyro will not rewrite it and lose them`,
        {
          details: { path, keys, value },
          hint: `add the entry by hand under ${keys.map((k) => JSON.stringify(k)).join(" → ")}: ${JSON.stringify(value)}`,
        },
      );
    }
  }
  let at = root;
  for (const [i, k] of keys.entries()) {
    if (i === keys.length - 1) {
      at[k] = value;
      break;
    }
    const next = at[k];
    if (next !== undefined && !isObject(next))
      throw new PyroError("INVALID_INPUT", `${path}: "${keys.slice(0, i + 1).join(".")}" is not an object`, {
        details: { path },
      });
    at[k] ??= {};
    at = at[k] as Json;
  }
  return `${JSON.stringify(root, null, 2)}\n`;
}
