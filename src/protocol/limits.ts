/**
 * Size limits both sides of the wire agree on, defined once: the agent enforces them, the
 * host checks early (clearer errors, no wasted transfer) and the offline disk tools apply
 * the same ones so a stopped workspace reads like a running one.
 */

/** fs.read: default and largest max_bytes per call (read the rest with offset). */
export const READ_DEFAULT_BYTES = 65536;
export const READ_MAX_BYTES = 16 * 1024 * 1024;
/** fs.write: the largest content one call may carry. */
export const WRITE_MAX_BYTES = 16 * 1024 * 1024;
/** fs.list: default and largest number of entries per listing. */
export const LIST_DEFAULT_ENTRIES = 10_000;
export const LIST_MAX_ENTRIES = 100_000;
/** exec: per-stream output cap when the request names none. */
export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;
/** shell.write: the largest input one call may carry (a PTY line holds at most 4095 bytes). */
export const SHELL_INPUT_MAX_CHARS = 65536;
/** sys.keep: output kept per session while no connection holds it (oldest dropped past it). */
export const KEPT_STREAM_BYTES = 4 * 1024 * 1024;
/** net.connect: bytes either side may send past the peer's last ack (per forwarded connection). */
export const NET_WINDOW_BYTES = 1024 * 1024;
/**
 * Secrets (src/manager/secrets.ts, guest/secrets.ts): a name is also a valid environment
 * variable name; each value is 1..SECRET_MAX_BYTES bytes of UTF-8 without NUL; a workspace
 * holds at most SECRETS_MAX_COUNT of them, SECRETS_MAX_TOTAL_BYTES in all (so secrets.set,
 * JSON-escaped, always fits one frame).
 */
export const SECRET_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
export const SECRET_MAX_BYTES = 64 * 1024;
export const SECRETS_MAX_COUNT = 32;
export const SECRETS_MAX_TOTAL_BYTES = 128 * 1024;
