/**
 * `pyro run --ttl-seconds` bounds the one-shot machine's whole life: a ttl that runs out
 * during the command gives the ordinary timed-out result; one that runs out during boot is
 * GUEST_BOOT_TIMEOUT naming the ttl. Either way nothing is left behind.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { ensureBuilt, freshHome, processesMatching, pyro } from "./helpers.ts";

const SLEEPER = ["sh", "-c", "echo started; sleep 30"];

function noRunLeft(home: string) {
  const runs = join(home, "runs");
  expect(existsSync(runs) ? readdirSync(runs) : []).toEqual([]);
  expect(processesMatching(home)).toEqual([]);
}

beforeAll(async () => {
  await ensureBuilt();
});

/** `pyro run --json --ttl-seconds TTL [--timeout-seconds T]` in host compat, in a fresh home. */
async function hostRun(ttl: number, timeout: number | null, command: string[]) {
  const home = freshHome();
  const limits = ["--ttl-seconds", String(ttl), ...(timeout ? ["--timeout-seconds", String(timeout)] : [])];
  const r = await pyro(["run", "--allow-host-compat", "--json", ...limits, "debian:12", "--", ...command], {
    home,
  });
  return { r, home };
}

describe("pyro run --ttl-seconds (host compat)", () => {
  test("a ttl longer than the command changes nothing", async () => {
    const { r, home } = await hostRun(60, null, ["sh", "-c", "sleep 0.2; echo done"]);
    expect(r.code).toBe(0);
    expect(r.json.timed_out).toBe(false);
    expect(r.json.stdout).toBe("done\n");
    noRunLeft(home);
  });

  test("a ttl shorter than the command's timeout ends the run at the ttl: timed-out result, machine gone", async () => {
    // the command's own timeout (60 s) is far beyond the sleep (30 s): only the ttl can cut it
    const { r, home } = await hostRun(1, 60, SLEEPER);
    expect(r.code).toBe(124);
    expect(r.json.timed_out).toBe(true);
    expect(r.json.exit_code).toBe(124);
    expect(r.json.stdout).toBe("started\n");
    noRunLeft(home);
  });

  test("ttl 0 means no bound: the command's own timeout decides", async () => {
    const { r, home } = await hostRun(0, 1, SLEEPER);
    expect(r.code).toBe(124);
    expect(r.json.timed_out).toBe(true);
    noRunLeft(home);
  });
});

guest.describe("pyro run --ttl-seconds (real guest)", () => {
  test("real guest: a 1 s ttl ends the run at the ttl, whichever phase it falls in, and leaves nothing", async () => {
    const home = await guestHome();
    const r = await pyro(
      ["run", "--json", "--ttl-seconds", "1", "--timeout-seconds", "60", "debian:12", "--", ...SLEEPER],
      { home },
    );
    if (r.json.code !== undefined) {
      // the usual case under TCG: boot takes longer than a second
      expect(r.json.code).toBe("GUEST_BOOT_TIMEOUT");
      expect(r.json.details.ttl_seconds).toBe(1);
      expect(r.json.message).toContain("ttl_seconds");
      expect(r.code).toBe(70);
    } else {
      expect(r.json.timed_out).toBe(true);
      expect(r.code).toBe(124);
    }
    noRunLeft(home);
  }, 120_000);
});
