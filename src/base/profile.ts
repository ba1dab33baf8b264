/**
 * Timing marks for profiling a command end to end across its processes (the CLI, the
 * supervisor): with `PYRO_PROFILE=<file>` set, `mark(label)` appends
 * `<unix ms> <pid> <label>` to that file (O_APPEND: the processes' lines interleave whole).
 * A no-op otherwise. Sorted by time, the lines are the breakdown in docs/templates.md
 * ("Where the time goes").
 */
import { appendFileSync } from "node:fs";

const file = process.env.PYRO_PROFILE;

/** Append one timing mark (only with PYRO_PROFILE set). */
export function mark(label: string): void {
  if (!file) return;
  try {
    appendFileSync(
      file,
      `${(performance.timeOrigin + performance.now()).toFixed(1)} ${process.pid} ${label}\n`,
    );
  } catch {}
}

/** The process's start (its time origin), marked once at entry. */
export function markStart(role: string): void {
  if (!file) return;
  try {
    appendFileSync(file, `${performance.timeOrigin.toFixed(1)} ${process.pid} ${role}.exec\n`);
  } catch {}
  mark(`${role}.main`);
}
