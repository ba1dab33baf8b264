/**
 * Telling a live process from a reused pid: a process is identified by its pid plus its start
 * time (clock ticks since boot, /proc/PID/stat field 22), which no later process with the
 * same pid shares.
 */
import { readFileSync } from "node:fs";

/** A process's start time (clock ticks since boot), null when it is gone or a zombie. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8") as string;
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return f[0] === "Z" ? null : (f[19] ?? null);
  } catch {
    return null;
  }
}
