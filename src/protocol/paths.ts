/**
 * The user-path rules every face applies the same way, live (guest/paths.ts) and offline
 * (src/manager/disk/paths.ts): users and models name files as `/workspace/...` or relative
 * to it; any other absolute path is outside. These functions are purely lexical.
 */
import { PyroError } from "./errors.ts";

export const WORKSPACE_DISPLAY_ROOT = "/workspace";

export function outside(shown: string): PyroError {
  return new PyroError(
    "PATH_OUTSIDE_WORKSPACE",
    `path resolves outside ${WORKSPACE_DISPLAY_ROOT}: ${shown}`,
    {
      details: { path: shown },
    },
  );
}

/** Components of a user path relative to /workspace; other absolute paths are refused. */
export function userPathParts(userPath: string): string[] {
  if (typeof userPath !== "string" || userPath === "")
    throw new PyroError("INVALID_INPUT", "path must not be empty");
  if (userPath.includes("\0")) throw new PyroError("INVALID_INPUT", "path must not contain NUL bytes");
  let rel = userPath;
  if (userPath.startsWith("/")) {
    if (userPath === WORKSPACE_DISPLAY_ROOT || userPath.startsWith(`${WORKSPACE_DISPLAY_ROOT}/`)) {
      rel = userPath.slice(WORKSPACE_DISPLAY_ROOT.length);
    } else if (/^\/+$/.test(userPath)) {
      throw outside(userPath);
    } else {
      // "//workspace/x" is the same path to the kernel; anything else is outside
      const squeezed = userPath.replace(/\/+/g, "/");
      if (squeezed !== userPath) return userPathParts(squeezed);
      throw outside(userPath);
    }
  }
  return rel.split("/").filter((p) => p !== "" && p !== ".");
}

/** How to name a user path in messages before (or without) resolving it: lexical, never real. */
export function showPath(userPath: string): string {
  let parts: string[];
  try {
    parts = userPathParts(userPath);
  } catch {
    return JSON.stringify(userPath);
  }
  const stack: string[] = [];
  for (const p of parts) {
    if (p !== "..") stack.push(p);
    else if (stack.pop() === undefined) return JSON.stringify(userPath);
  }
  return stack.length ? `${WORKSPACE_DISPLAY_ROOT}/${stack.join("/")}` : WORKSPACE_DISPLAY_ROOT;
}
