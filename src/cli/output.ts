/** How results and errors leave the CLI (the shapes are fixed by the contract). */
import { PyroError, toPyroError } from "../protocol/errors.ts";

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function renderDefault(out: Record<string, unknown>): string {
  return Object.entries(out)
    .map(([k, v]) => `${k}: ${typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}`)
    .join("\n");
}

/** Print an error the contract's way and return the exit code. */
export function reportError(err: unknown, json: boolean): number {
  const e = err instanceof PyroError ? err : toPyroError(err);
  if (json) printJson(e.toJSON());
  else {
    process.stderr.write(`pyro: ${e.message} [${e.code}]\n`);
    if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
    const tail = e.details?.console_tail;
    if (typeof tail === "string" && tail.trim()) process.stderr.write(`console log tail:\n${tail}\n`);
  }
  return e.exitCode;
}
