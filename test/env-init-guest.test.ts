/**
 * An installed catalog environment is up to date only while it holds both the agent and the
 * /sbin/pyro-init this pyro ships (src/env/install.ts). The init lives in the pyro executable,
 * not the agent, so before the manifest carried `init_sha256` a changed init alone left every
 * installed environment booting the old one (found when the init became the detached-boot
 * one of guest/attach.ts).
 */
import { expect } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { pyro } from "./helpers.ts";

function manifestPath(home: string): string {
  const dir = join(home, "environments", "debian-12");
  const version = readdirSync(dir).find((v) => existsSync(join(dir, v, "manifest.json")));
  if (!version) throw new Error(`no installed debian:12 under ${dir}`);
  return join(dir, version, "manifest.json");
}

guest.describe("real guest: an environment holding another init", () => {
  guest.test(
    "real guest: env build rebuilds an environment whose /sbin/pyro-init differs (same agent); the rebuilt one boots and attaches",
    async () => {
      const home = await guestHome();
      const path = manifestPath(home);
      const original = JSON.parse(readFileSync(path, "utf8"));
      expect(original.init_sha256).toMatch(/^[0-9a-f]{64}$/);

      // the probe: an up-to-date environment is not rebuilt
      const same = await pyro(["env", "build", "debian:12", "--json"], { home });
      expect(same.code).toBe(0);
      expect(same.stderr).not.toContain("rebuilding");

      writeFileSync(path, `${JSON.stringify({ ...original, init_sha256: "0".repeat(64) }, null, 2)}\n`);
      const rebuilt = await pyro(["env", "build", "debian:12", "--json"], { home });
      expect(rebuilt.code).toBe(0);
      expect(rebuilt.stderr).toContain("holds another /sbin/pyro-init; rebuilding its root filesystem");
      const after = JSON.parse(readFileSync(manifestPath(home), "utf8"));
      expect(after.init_sha256).toBe(original.init_sha256);
      expect(after.agent_sha256).toBe(original.agent_sha256);

      const r = await pyro(
        ["run", "debian:12", "--mem-mib", "512", "--json", "--", "cat", "/proc/sys/kernel/random/boot_id"],
        { home },
      );
      expect(r.json?.execution_mode).toBe("guest");
      expect(r.json?.exit_code).toBe(0);
      expect(String(r.json?.stdout).trim()).toMatch(/^[0-9a-f-]{36}$/);
    },
    900_000,
  );
});
