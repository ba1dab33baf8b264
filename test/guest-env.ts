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

/**
 * A network probe that cannot pass by accident: an HTTP server on this host's loopback (only
 * servers on this machine are ever reached) and a guest bash line that first prints
 * `probe-ran` (so a guest that never booted or never ran the line is told apart from one whose
 * connection failed) and then fetches the server through QEMU user networking's gateway,
 * 10.0.2.2, which maps to the host's loopback. With networking on the output holds `reply`.
 */
export function loopbackProbe(): { script: string; reply: string; stop(): void } {
  const reply = `hello-from-host-${process.pid}`;
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(reply) });
  const script = `echo probe-ran; exec 3<>/dev/tcp/10.0.2.2/${server.port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3`;
  return { script, reply, stop: () => server.stop(true) };
}

/** The probe's result: it ran in a guest, and whether it reached the host server. */
export function probeReached(r: { json: any }, reply: string): boolean {
  const j = r.json ?? {};
  if (j.execution_mode !== "guest" || typeof j.exit_code !== "number" || j.timed_out !== false)
    throw new Error(`the network probe did not run in a guest: ${JSON.stringify(j).slice(0, 500)}`);
  if (!String(j.stdout).startsWith("probe-ran\n"))
    throw new Error(`the network probe line did not run: ${JSON.stringify(j).slice(0, 500)}`);
  const reached = String(j.stdout).includes(reply);
  if (reached !== (j.exit_code === 0))
    throw new Error(`probe output and exit code disagree: ${JSON.stringify(j).slice(0, 500)}`);
  return reached;
}
