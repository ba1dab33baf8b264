import { PyroError } from "../protocol/errors.ts";

/** Ids carry a prefix with "_", a character names may not contain: an id and a name never collide. */
export const WORKSPACE_ID_PREFIX = "ws_";
const ID_RE = /^ws_[0-9a-f]{12}$/;
export const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const LABEL_KEY_RE = /^[a-z0-9]([a-z0-9._/-]{0,62})$/;

/** Random hex from the global Web Crypto (a static node:crypto import costs ~5–10 ms of CLI start). */
export function randomHex(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");
}

export function newWorkspaceId(): string {
  return WORKSPACE_ID_PREFIX + randomHex(6);
}

export function isWorkspaceId(s: string): boolean {
  return ID_RE.test(s);
}

export function validateName(name: string): string {
  if (name.startsWith(WORKSPACE_ID_PREFIX) || name.includes("_")) {
    throw new PyroError(
      "INVALID_INPUT",
      `name "${name}" is shaped like a workspace id; names may not contain "_"`,
    );
  }
  if (!NAME_RE.test(name)) {
    throw new PyroError("INVALID_INPUT", `invalid name "${name}": use lowercase [a-z0-9][a-z0-9._-]{0,62}`);
  }
  return name;
}

export function validateLabels(labels: Record<string, string>): Record<string, string> {
  const keys = Object.keys(labels);
  if (keys.length > 32) throw new PyroError("INVALID_INPUT", "at most 32 labels");
  for (const k of keys) {
    if (!LABEL_KEY_RE.test(k)) throw new PyroError("INVALID_INPUT", `invalid label key "${k}"`);
    const val = labels[k] as string;
    if (val.length > 256)
      throw new PyroError("INVALID_INPUT", `label "${k}" value longer than 256 characters`);
  }
  return labels;
}
