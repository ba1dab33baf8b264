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
