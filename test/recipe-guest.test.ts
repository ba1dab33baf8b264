/**
 * Recipes built inside a real guest (`pyro env create NAME --recipe FILE`): a recipe that copies
 * a local apt repository in (built here by test/recipe-fixture.ts, network off), installs its
 * package, runs a command and sets a variable builds once; the package's binary, the command's
 * file and the variable are there in `pyro run NAME`; a second create with the same inputs is
 * a cache hit (nothing boots, the installed environment is kept); after `env delete` the
 * cached root tree is reused without a build guest; a failing step is ENVIRONMENT_BUILD_FAILED
 * with nothing installed and no build workspace left. Own build cache, so hits are real.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { pyro } from "./helpers.ts";
import { HELLO_OUTPUT, makeAptRepo, writeRecipe } from "./recipe-fixture.ts";

let home = "";
let work = "";
let file = "";
const NAME = "hello-recipe";
const run = (args: string[]) => pyro(args, { home, env: { PYRO_BUILD_CACHE: join(work, "cache") } });

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  work = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "recipe-"));
  makeAptRepo(work);
  file = writeRecipe(work);
}, 1_800_000);

afterAll(async () => {
  if (home) await run(["env", "delete", NAME]);
});

guest.describe("real guest: recipes", () => {
  test("real guest: a recipe installs a package from a local apt repository, builds once, then hits the cache", async () => {
    const first = await run(["env", "create", NAME, "--recipe", file, "--json"]);
    expect(first.code, `${first.stdout}\n${first.stderr}`).toBe(0);
    expect(first.stderr).toContain("booting a build machine of debian:12");
    expect(first.json.manifest).toMatchObject({
      name: NAME,
      custom: true,
      source: { kind: "recipe", ref: file },
      image: { env: ["GREETING=hi-from-recipe-env"] },
    });
    expect(first.json.manifest.packages).toContain("pyro-hello");
    expect(first.json.manifest.version).toMatch(/^rcp-[0-9a-f]{12}$/);

    const r = await run([
      "run",
      NAME,
      "--json",
      "--timeout-seconds",
      "60",
      "--",
      "sh",
      "-c",
      'pyro-hello; cat /etc/recipe-proof; echo "$GREETING"; ls /workspace | wc -l',
    ]);
    expect(r.json?.execution_mode).toBe("guest");
    expect(r.json.stdout).toBe(`${HELLO_OUTPUT}\n${HELLO_OUTPUT}\nhi-from-recipe-env\n0\n`);

    const listed = await run(["env", "list", "--json"]);
    expect(listed.json.environments.find((e: any) => e.name === NAME)).toMatchObject({
      custom: true,
      installed: true,
      source: file,
    });
    // life cycle: inspect verifies it and shows its source; doctor checks it
    const inspected = await run(["env", "inspect", NAME, "--json"]);
    expect(inspected.json).toMatchObject({ installed: true, verified: true, recipe: null });
    expect(inspected.json.manifest.source.kind).toBe("recipe");
    const doctor = await run(["doctor", "--environment", NAME, "--json"]);
    expect(doctor.json.checks.find((c: any) => c.name === `env ${NAME}`)?.ok).toBe(true);
    // no build workspace is left behind
    const wss = await run(["workspace", "list", "--json"]);
    expect(wss.json.workspaces.filter((w: any) => String(w.name).startsWith("pyro-recipe-"))).toEqual([]);

    // same inputs: cache hit, nothing boots, the installed environment is kept as it is
    const second = await run(["env", "create", NAME, "--recipe", file, "--json"]);
    expect(second.code).toBe(0);
    expect(second.stderr).toContain("recipe cache hit");
    expect(second.stderr).not.toContain("booting a build machine");
    expect(second.json.manifest.built_at).toBe(first.json.manifest.built_at);
    expect(second.json.manifest.rootfs.sha256).toBe(first.json.manifest.rootfs.sha256);

    // deleted and created again: the build cache's root tree is used, no build machine
    expect((await run(["env", "delete", NAME])).code).toBe(0);
    const third = await run(["env", "create", NAME, "--recipe", file, "--json"]);
    expect(third.code).toBe(0);
    expect(third.stderr).toContain("recipe cache hit: root tree");
    expect(third.stderr).not.toContain("booting a build machine");
    expect(third.json.manifest.version).toBe(first.json.manifest.version);
    const again = await run(["run", NAME, "--json", "--timeout-seconds", "60", "--", "pyro-hello"]);
    expect(again.json?.stdout).toBe(`${HELLO_OUTPUT}\n`);
  }, 1_800_000);

  test("real guest: a failing recipe step is ENVIRONMENT_BUILD_FAILED naming the step; nothing installed or left", async () => {
    const dir = mkdtempSync(join(work, "fail-"));
    makeAptRepo(dir);
    const bad = writeRecipe(dir, { commands: ["echo about to fail >&2; exit 7"] });
    const r = await run(["env", "create", "failing-recipe", "--recipe", bad, "--json"]);
    expect(r.json?.code).toBe("ENVIRONMENT_BUILD_FAILED");
    expect(r.json.message).toContain("exit code 7");
    expect(r.json.details.stderr_tail).toContain("about to fail");
    const listed = await run(["env", "list", "--json"]);
    expect(listed.json.environments.map((e: any) => e.name)).not.toContain("failing-recipe");
    const wss = await run(["workspace", "list", "--json"]);
    expect(wss.json.workspaces.filter((w: any) => String(w.name).startsWith("pyro-recipe-"))).toEqual([]);
  }, 1_800_000);
});
