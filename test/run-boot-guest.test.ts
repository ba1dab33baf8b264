/**
 * `pyro run` results say how the disposable machine came up: `boot` is `template` when the
 * environment's VM template was restored, `cold` (with `boot_note` saying why) otherwise.
 */
import { beforeAll, expect } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { pyro } from "./helpers.ts";

let home = "";
beforeAll(async () => {
  if (guest.ok) home = await guestHome();
}, 1_800_000);

guest.test(
  "real guest: run says boot template with templates on, and cold with PYRO_TEMPLATES=off",
  async () => {
    // cold first: proves the field is not a constant (and that a cold run still answers)
    const cold = await pyro(["run", "--json", "debian:12", "--", "sh", "-c", "echo cold-ran"], {
      home,
      env: { PYRO_TEMPLATES: "off" },
    });
    expect(cold.json.stdout).toBe("cold-ran\n");
    expect(cold.json.execution_mode).toBe("guest");
    expect(cold.json.boot).toBe("cold");
    expect(cold.json.boot_note).toBe("PYRO_TEMPLATES=off");

    // the first templated run makes the template (once), then restores it
    const warm = await pyro(["run", "--json", "debian:12", "--", "sh", "-c", "echo warm-ran"], { home });
    expect(warm.json.stdout).toBe("warm-ran\n");
    expect(warm.json.boot).toBe("template");
    expect(warm.json.boot_note).toBeNull();
    expect(readdirSync(join(home, "templates")).filter((n) => !n.startsWith(".")).length).toBeGreaterThan(0);

    // the human face prints only the command's output (the fields are for --json, SDK and MCP)
    const human = await pyro(["run", "debian:12", "--", "sh", "-c", "echo human-ran"], { home });
    expect(human.stdout).toBe("human-ran\n");
  },
  600_000,
);
