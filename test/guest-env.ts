/**
 * Real-guest test support: one installed debian:12 per test process (built from the shared
 * build cache). Whether real guests can run here is the "guest" capability (./capabilities.ts):
 * declare it with `needs("guest")`, which under CI fails instead of skipping.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { needs } from "./capabilities.ts";
import { ensureBuilt, pyro } from "./helpers.ts";

/** The "guest" capability: `guest.describe(...)`, `guest.test(...)`, `guest.ok`. */
export const guest = needs("guest");
/** @deprecated use `guest` (a skipIf on this is still caught by scripts/test.ts under CI). */
export const SKIP_GUESTS = !guest.ok;

let home: string | null = null;
/** A PYRO_HOME with debian:12 installed (kernel and package tree come from the build cache). */
export async function guestHome(): Promise<string> {
  if (home) return home;
  await ensureBuilt();
  const h = join(process.env.PYRO_TEST_TMP as string, "guest-home");
  mkdirSync(h, { recursive: true });
  const r = await pyro(["env", "build", "debian:12", "--json"], { home: h });
  if (r.code !== 0) throw new Error(`env build failed: ${r.stdout}${r.stderr}`);
  home = h;
  return h;
}
