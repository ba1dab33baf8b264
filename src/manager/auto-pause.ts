/**
 * `auto_pause_after_seconds`: a running workspace is paused (src/manager/pause.ts: its machine's
 * memory saved to disk, its RAM freed) once it has been idle that long, and resumed by the next
 * operation that needs the machine (src/operations/invoke.ts). The supervisor decides when
 * (src/supervisor/idle.ts); this file holds the setting's rules, checked at create and update.
 *
 * Decisions (docs/public-contract.md "Auto-pause"):
 * - Off by default; 0 turns it off. Otherwise AUTO_PAUSE_MIN_SECONDS..AUTO_PAUSE_MAX_SECONDS
 *   (the schema in src/operations/fields.ts refuses the rest with INVALID_INPUT).
 * - Only a workspace whose machine can be paused takes it: host compat has no machine state to
 *   save, so the setting is refused there (BACKEND_UNAVAILABLE), never silently ignored.
 */
import { PyroError } from "../protocol/errors.ts";

/** Below this a pause (seconds of work under TCG) would cost more than the idle time it saves. */
export const AUTO_PAUSE_MIN_SECONDS = 10;
/** 30 days, the longest TTL. */
export const AUTO_PAUSE_MAX_SECONDS = 30 * 86400;

/**
 * The value to record for a requested setting on a workspace of this backend: null when turned
 * off (0), the seconds otherwise; undefined when none was requested.
 */
export function autoPauseSetting(backend: string, seconds: number | undefined): number | null | undefined {
  if (seconds === undefined) return undefined;
  if (seconds === 0) return null;
  if (!Number.isInteger(seconds) || seconds < AUTO_PAUSE_MIN_SECONDS || seconds > AUTO_PAUSE_MAX_SECONDS) {
    throw new PyroError(
      "INVALID_INPUT",
      `auto_pause_after_seconds must be 0 (off) or ${AUTO_PAUSE_MIN_SECONDS}..${AUTO_PAUSE_MAX_SECONDS}, not ${seconds}`,
    );
  }
  if (backend === "host") {
    throw new PyroError(
      "BACKEND_UNAVAILABLE",
      "host compat cannot pause a workspace, so it cannot auto-pause one",
      {
        hint: "auto_pause_after_seconds needs a guest backend that saves machine state (qemu or firecracker); leave it out with --allow-host-compat",
      },
    );
  }
  return seconds;
}
