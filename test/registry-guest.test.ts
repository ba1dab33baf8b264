/** An environment's round trip through a real OCI registry, ending in a boot. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { needs } from "./capabilities.ts";
import { guestHome } from "./guest-env.ts";
import { pyro } from "./helpers.ts";
import { startRegistry } from "./registry.ts";

needs("guest", "docker-registry").describe("real guest: environment through a registry", () => {
  let home = "";
  let registry: Awaited<ReturnType<typeof startRegistry>> | null = null;
  beforeAll(async () => {
    const base = await guestHome();
    home = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "reg-home-"));
    cpSync(join(base, "environments"), join(home, "environments"), { recursive: true });
    registry = await startRegistry();
  }, 1_800_000);
  afterAll(async () => {
    await registry?.stop();
  });

  needs("skopeo").test("real guest: env push → skopeo inspect → env prune → env pull → boot", async () => {
    const ref = `${registry?.host}/pyro/debian:12-test`;
    const push = await pyro(["env", "push", "debian:12", ref, "--json"], { home });
    expect(push.code).toBe(0);
    expect(push.json.digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    const sk = Bun.spawnSync(["skopeo", "inspect", "--tls-verify=false", "--raw", `docker://${ref}`]);
    expect(sk.exitCode).toBe(0);
    const manifest = JSON.parse(sk.stdout.toString());
    expect(manifest.artifactType).toBe("application/vnd.pyro.environment.v1");
    expect(manifest.layers.length).toBe(2);

    const prune = await pyro(["env", "prune", "debian:12", "--json"], { home });
    expect(prune.json.removed).toEqual(["debian:12"]);
    expect(
      (await pyro(["env", "list", "--json"], { home })).json.environments.find(
        (e: any) => e.name === "debian:12",
      ).installed,
    ).toBe(false);
    const missing = await pyro(["run", "--json", "debian:12", "--", "true"], {
      home,
      env: { PYRO_AUTO_BUILD: "0", PYRO_REGISTRY: "" },
    });
    expect(missing.json.code).toBe("ENVIRONMENT_NOT_FOUND");

    const pull = await pyro(["env", "pull", "debian:12", "--from", ref, "--json"], { home });
    expect(pull.code).toBe(0);
    expect(existsSync(join(pull.json.dir, "rootfs.ext4"))).toBe(true);
    const inspect = await pyro(["env", "inspect", "debian:12", "--json"], { home });
    expect(inspect.json.verified).toBe(true);

    const run = await pyro(["run", "--json", "debian:12", "--", "git", "--version"], { home });
    expect(run.json.exit_code).toBe(0);
    expect(run.json.stdout).toMatch(/^git version/);
    expect(run.json.execution_mode).toBe("guest");
  });

  test("real guest: a missing environment is pulled automatically when PYRO_REGISTRY is set", async () => {
    const h = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "auto-pull-"));
    const r = await pyro(["run", "--json", "debian:12", "--", "true"], {
      home: h,
      env: { PYRO_REGISTRY: `${registry?.host}/pyro`, PYRO_AUTO_BUILD: "0" },
    });
    // the registry holds debian:12-test only: the automatic pull names the exact failure
    expect(["ENVIRONMENT_NOT_FOUND", "REGISTRY_ERROR"]).toContain(r.json.code);
    const ref = `${registry?.host}/pyro/debian:12`;
    const base = await guestHome();
    expect((await pyro(["env", "push", "debian:12", ref], { home: base })).code).toBe(0);
    const ok = await pyro(["run", "--json", "debian:12", "--", "true"], {
      home: h,
      env: { PYRO_REGISTRY: `${registry?.host}/pyro`, PYRO_AUTO_BUILD: "0" },
    });
    expect(ok.json.exit_code).toBe(0);
  });
});
