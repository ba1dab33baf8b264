/**
 * Real-guest test support: one installed debian:12 per test process (built from the shared
 * build cache), and the rule that under CI a real-guest test must run, never skip.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, pyro } from "./helpers.ts";

export const REQUIRE_GUESTS = process.env.PYRO_REQUIRE_GUESTS === "1";

/** Why real guests cannot run here, or null when they can. */
export function guestUnavailableReason(): string | null {
  if (!Bun.which("qemu-system-x86_64")) return "qemu-system-x86_64 is not installed";
  if (process.getuid?.() !== 0) return "building an environment needs root";
  if (!Bun.which("debootstrap")) return "debootstrap is not installed";
  if (!existsSync("/usr/src/linux-source-6.1.tar.xz")) return "linux-source-6.1 is not installed";
  return null;
}

const reason = guestUnavailableReason();
if (reason && REQUIRE_GUESTS) throw new Error(`real-guest tests are required here but cannot run: ${reason}`);
export const SKIP_GUESTS = reason !== null;
if (SKIP_GUESTS) console.error(`real guest tests skipped: ${reason}`);

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
