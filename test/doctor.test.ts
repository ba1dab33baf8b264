/**
 * `pyro doctor` passes on a host where guests run (KVM trouble and an environment that first
 * use will install are warnings), and fails with an exit code from the error table.
 */
import { beforeAll, expect, test } from "bun:test";
import { ERROR_EXIT_CODES } from "../src/protocol/errors.ts";
import { needs } from "./capabilities.ts";
import { guest, guestHome } from "./guest-env.ts";
import { ensureBuilt, freshHome, pyro } from "./helpers.ts";

/** KVM ruled out whatever the host has; the default environment installable from a registry. */
const TCG_ONLY = { PYRO_ACCEL: "tcg", PYRO_QEMU_BIN: "", PYRO_REGISTRY: "http://127.0.0.1:9" };

type Check = { name: string; ok: boolean; warning?: boolean; detail: string; hint: string | null };
const check = (json: { checks: Check[] }, name: string) => json.checks.find((c) => c.name === name);

beforeAll(async () => {
  await ensureBuilt();
});

needs("qemu").describe("pyro doctor", () => {
  const home = freshHome();

  test("with QEMU (TCG) and no usable KVM it passes; the missing environment is a warning", async () => {
    const r = await pyro(["doctor", "--json"], { home, env: TCG_ONLY });
    expect(r.code).toBe(0);
    expect(r.json.ok).toBe(true);
    expect(r.json.checks.filter((c: Check) => !c.ok)).toEqual([]);
    expect(check(r.json, "qemu")?.detail).toContain("TCG available");
    const env = check(r.json, "env debian:12");
    expect(env?.warning).toBe(true);
    expect(env?.hint).toBe("pyro prepare debian:12");
    const human = await pyro(["doctor"], { home, env: TCG_ONLY });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/all checks passed \(\d+ warnings?\)/);
  });

  test("without QEMU on PATH nothing can boot: not ok, BACKEND_UNAVAILABLE's exit code", async () => {
    const env = { ...TCG_ONLY, PATH: "/nonexistent" };
    const r = await pyro(["doctor", "--json"], { home, env });
    expect(r.json.ok).toBe(false);
    expect(check(r.json, "qemu")?.ok).toBe(false);
    expect(r.code).toBe(ERROR_EXIT_CODES.BACKEND_UNAVAILABLE);
    const human = await pyro(["doctor"], { home, env });
    expect(human.stdout).toContain("some checks failed");
    expect(human.code).toBe(ERROR_EXIT_CODES.BACKEND_UNAVAILABLE);
  });

  test("an environment that can be neither built nor pulled fails with ENVIRONMENT_NOT_FOUND's exit code", async () => {
    const env = { ...TCG_ONLY, PYRO_REGISTRY: "", PYRO_AUTO_BUILD: "0" };
    const r = await pyro(["doctor", "--json"], { home, env });
    expect(r.json.ok).toBe(false);
    expect(r.json.checks.filter((c: Check) => !c.ok).map((c: Check) => c.name)).toEqual(["env debian:12"]);
    expect(r.code).toBe(ERROR_EXIT_CODES.ENVIRONMENT_NOT_FOUND);
  });
});

guest.describe("pyro doctor (real guest)", () => {
  test("real guest: on this host doctor passes, and KVM that the probe finds unusable is a warning", async () => {
    const r = await pyro(["doctor", "--json"], { home: await guestHome() });
    expect(r.code).toBe(0);
    expect(r.json.ok).toBe(true);
    expect(check(r.json, "env debian:12")?.detail).toContain("digests verified");
    const kvm = check(r.json, "kvm_usable");
    expect(kvm?.detail).toMatch(/^(yes|no:)/);
    expect(kvm?.warning === true).toBe(kvm?.detail.startsWith("no:") as boolean);
  }, 120_000);
});
