/**
 * errno → PyroError naming what the user knows (a `/workspace/...` path or an archive
 * entry), never the real host path: in host-compat mode the real root is a host directory
 * and its location is none of the model's business. Shared by the archive code and the
 * guest's file operations. (A candidate for src/protocol/errors.ts.)
 */
import { PyroError } from "../errors.ts";

const IO_CODES = new Set([
  "ENOSPC",
  "EDQUOT",
  "EIO",
  "EROFS",
  "EFBIG",
  "EMFILE",
  "ENFILE",
  "ENOMEM",
  "EBUSY",
  "ETXTBSY",
]);

export function fsError(err: unknown, shown: string): PyroError {
  if (err instanceof PyroError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? "";
  const details = { path: shown, errno: code || undefined };
  const mk = (c: PyroError["code"], what: string) =>
    new PyroError(c, `${what}: ${shown}`, { details, cause: err });
  switch (code) {
    case "ENOENT":
      return mk("FILE_NOT_FOUND", "no such file or directory");
    case "EEXIST":
      return mk("ALREADY_EXISTS", "already exists");
    case "ENOTDIR":
      return mk("NOT_A_DIRECTORY", "not a directory");
    case "EISDIR":
      return mk("IS_A_DIRECTORY", "is a directory");
    case "EACCES":
    case "EPERM":
      return mk("PERMISSION_DENIED", "permission denied");
    case "ENOTEMPTY":
      return mk("INVALID_INPUT", "directory not empty");
    case "ELOOP":
      // O_NOFOLLOW met a symlink that appeared after the path was checked
      return mk("PATH_OUTSIDE_WORKSPACE", "refusing to follow a symbolic link");
    case "ENAMETOOLONG":
      return mk("INVALID_INPUT", "name too long");
    case "EINVAL":
      return mk("INVALID_INPUT", "invalid argument");
    case "EXDEV":
      return mk("IO_ERROR", "cannot move across filesystems");
    case "ENOSPC":
    case "EDQUOT":
      return mk("IO_ERROR", `no space left on device (${code})`);
  }
  if (IO_CODES.has(code)) return mk("IO_ERROR", `I/O error (${code})`);
  const message = err instanceof Error ? err.message : String(err);
  // Node-style messages embed the real path; keep only the errno text.
  return new PyroError(code ? "IO_ERROR" : "INTERNAL", code ? `${code}: ${shown}` : message, {
    details,
    cause: err,
  });
}
