/**
 * The one error vocabulary shared by host and guest. Guest errors cross the wire as
 * `{code, message, details}` and become PyroError again on the host, so the code table
 * lives in the protocol module. The CLI exit code for each code is fixed here too
 * (exhaustive Record: adding a code without an exit code does not compile).
 */

export const ERROR_EXIT_CODES = {
  // usage / input (64 = EX_USAGE)
  INVALID_INPUT: 64,
  // not found family (66 = EX_NOINPUT)
  WORKSPACE_NOT_FOUND: 66,
  ENVIRONMENT_NOT_FOUND: 66,
  FILE_NOT_FOUND: 66,
  SNAPSHOT_NOT_FOUND: 66,
  EXEC_NOT_FOUND: 66,
  SHELL_NOT_FOUND: 66,
  SECRET_NOT_FOUND: 66,
  SERVICE_NOT_FOUND: 66,
  /** an adopt found no session the agent kept across a pause (sys.keep) */
  SESSION_NOT_FOUND: 66,
  // refused by policy / state (65 = EX_DATAERR family, 75 = temporary)
  PATH_OUTSIDE_WORKSPACE: 65,
  PATCH_REJECTED: 65,
  NAME_CONFLICT: 65,
  FILE_TOO_LARGE: 65,
  NOT_A_DIRECTORY: 65,
  IS_A_DIRECTORY: 65,
  ALREADY_EXISTS: 65,
  WORKSPACE_NOT_STARTED: 75,
  WORKSPACE_NOT_STOPPED: 75,
  WORKSPACE_BUSY: 75,
  /** the request does not fit the state it met (a guest not attached yet, or attached twice) */
  INVALID_STATE: 75,
  WORKSPACE_LIMIT_REACHED: 75,
  SHELL_LIMIT_REACHED: 75,
  LOCK_TIMEOUT: 75,
  HOST_COMPAT_NOT_ALLOWED: 77,
  HOST_PATH_NOT_ALLOWED: 77,
  INPUT_TOO_LARGE: 65,
  WORKSPACE_CORRUPT: 65,
  SNAPSHOT_CORRUPT: 65,
  OFFSET_OUT_OF_RANGE: 65,
  SHELL_CLOSED: 65,
  PORT_IN_USE: 75,
  SERVICE_EXISTS: 65,
  SERVICE_NOT_READY: 65,
  SERVICE_LIMIT_REACHED: 75,
  PUBLISH_NOT_ALLOWED: 77,
  // host / VMM (69 = EX_UNAVAILABLE)
  KVM_UNAVAILABLE: 69,
  VMM_NOT_FOUND: 69,
  BACKEND_UNAVAILABLE: 69,
  NETWORK_UNSUPPORTED: 69,
  CONNECTION_REFUSED: 69,
  VMM_FAILED: 69,
  GUEST_BOOT_TIMEOUT: 70,
  GUEST_UNREACHABLE: 70,
  GUEST_TIMEOUT: 70,
  SUPERVISOR_UNREACHABLE: 70,
  AGENT_UNRESPONSIVE: 70,
  AGENT_VERSION_MISMATCH: 76,
  PROTOCOL_ERROR: 76,
  FRAME_TOO_LARGE: 76,
  ENVIRONMENT_CORRUPT: 65,
  ENVIRONMENT_BUILD_FAILED: 70,
  REGISTRY_ERROR: 69,
  PERMISSION_DENIED: 77,
  IO_ERROR: 74,
  // bug
  INTERNAL: 70,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_EXIT_CODES;
export const ERROR_CODES = Object.keys(ERROR_EXIT_CODES) as ErrorCode[];

export interface ErrorShape {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export class PyroError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;
  readonly hint?: string;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { details?: Record<string, unknown>; hint?: string; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "PyroError";
    this.code = code;
    this.details = opts.details;
    this.hint = opts.hint;
  }

  toJSON(): ErrorShape & { hint?: string } {
    const out: ErrorShape & { hint?: string } = { code: this.code, message: this.message };
    if (this.details !== undefined) out.details = this.details;
    if (this.hint !== undefined) out.hint = this.hint;
    return out;
  }

  get exitCode(): number {
    return ERROR_EXIT_CODES[this.code];
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERROR_EXIT_CODES, value);
}

/** Rebuild a PyroError from a wire or JSON shape; unknown codes degrade to INTERNAL. */
export function errorFromShape(shape: {
  code?: unknown;
  message?: unknown;
  details?: unknown;
  hint?: unknown;
}): PyroError {
  const code = isErrorCode(shape.code) ? shape.code : "INTERNAL";
  const message = typeof shape.message === "string" ? shape.message : "unknown error";
  const details =
    shape.details && typeof shape.details === "object"
      ? (shape.details as Record<string, unknown>)
      : undefined;
  const hint = typeof shape.hint === "string" ? shape.hint : undefined;
  return new PyroError(code, message, { details, hint });
}

/** Map any thrown value to a PyroError; OS errors get codes at the edge with the path named. */
export function toPyroError(err: unknown): PyroError {
  if (err instanceof PyroError) return err;
  const e = err as NodeJS.ErrnoException;
  const where = e?.path ? `: ${e.path}` : "";
  switch (e?.code) {
    case "ENOENT":
      return new PyroError("FILE_NOT_FOUND", `no such file or directory${where}`, {
        details: { path: e.path },
      });
    case "EEXIST":
      return new PyroError("ALREADY_EXISTS", `already exists${where}`, { details: { path: e.path } });
    case "ENOTDIR":
      return new PyroError("NOT_A_DIRECTORY", `not a directory${where}`, { details: { path: e.path } });
    case "EISDIR":
      return new PyroError("IS_A_DIRECTORY", `is a directory${where}`, { details: { path: e.path } });
    case "EACCES":
    case "EPERM":
      return new PyroError("PERMISSION_DENIED", `permission denied${where}`, { details: { path: e.path } });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new PyroError("INTERNAL", message);
}
