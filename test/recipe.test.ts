/**
 * Recipe files refused before anything boots (`pyro env create NAME --recipe FILE`): each bad
 * recipe gets its stable code naming the field, and nothing appears in the environment store.
 * The positive case (a recipe that builds, runs, and hits the cache) is test/recipe-guest.test.ts.
 */
import { beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, freshHome, pyro } from "./helpers.ts";

let dir = "";
beforeAll(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "recipe-bad-"));
  mkdirSync(join(dir, "files"));
  writeFileSync(join(dir, "files", "a.conf"), "x=1\n");
});

function recipe(name: string, body: unknown): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, typeof body === "string" ? body : JSON.stringify(body));
  return file;
}

const cases: Array<[string, unknown, string, string]> = [
  ["not json", "{ base: debian", "INVALID_INPUT", "is not JSON"],
  ["unknown field", { base: "debian:12", pakages: ["jq"] }, "INVALID_INPUT", "pakages"],
  ["no base", { packages: ["jq"] }, "INVALID_INPUT", "base"],
  ["bad package name", { base: "debian:12", packages: ["jq; rm -rf /"] }, "INVALID_INPUT", "packages.0"],
  ["bad variable name", { base: "debian:12", env: { "A-B": "1" } }, "INVALID_INPUT", "env"],
  ["bad apt source", { base: "debian:12", apt_sources: ["http://x ./"] }, "INVALID_INPUT", "apt_sources.0"],
  [
    "dest under /workspace",
    { base: "debian:12", files: [{ source: "files", dest: "/workspace/x" }] },
    "INVALID_INPUT",
    "files.0.dest",
  ],
  [
    "relative dest",
    { base: "debian:12", files: [{ source: "files", dest: "etc/x" }] },
    "INVALID_INPUT",
    "files.0.dest",
  ],
  [
    "source outside the recipe's directory",
    { base: "debian:12", files: [{ source: "../../etc/passwd", dest: "/etc/x" }] },
    "INVALID_INPUT",
    "files.0.source",
  ],
  [
    "missing source",
    { base: "debian:12", files: [{ source: "nope", dest: "/etc/x" }] },
    "FILE_NOT_FOUND",
    "nope",
  ],
  ["unknown base", { base: "no-such-env" }, "ENVIRONMENT_NOT_FOUND", "no-such-env"],
];

for (const [what, body, code, mentions] of cases) {
  test(`bad recipe (${what}): ${code}, nothing installed`, async () => {
    const home = freshHome();
    const file = recipe(what.replaceAll(/\W+/g, "-"), body);
    const r = await pyro(["env", "create", "bad-recipe", "--recipe", file, "--json"], { home });
    expect(r.json?.code).toBe(code);
    expect(r.json.message).toContain(mentions);
    expect(r.code).toBe(code === "INVALID_INPUT" ? 64 : r.code);
    const envs = join(home, "environments");
    expect(existsSync(envs) ? readdirSync(envs).filter((e) => !e.startsWith(".")) : []).toEqual([]);
  });
}

test("a good recipe passes the checks (proof the probe above can pass): it fails only later, at the base", async () => {
  const home = freshHome();
  const file = recipe("good", { base: "debian:12", files: [{ source: "files", dest: "/etc/x" }] });
  // debian:12 is not installed in a fresh home and building it is off: the error is about the base
  const r = await pyro(["env", "create", "good-recipe", "--recipe", file, "--json"], {
    home,
    env: { PYRO_AUTO_BUILD: "0", PYRO_REGISTRY: "" },
  });
  expect(r.json?.code).toBe("ENVIRONMENT_NOT_FOUND");
  expect(r.json.message).toContain("debian:12");
});

test("exactly one source: --recipe with --from-image is INVALID_INPUT", async () => {
  const file = recipe("two", { base: "debian:12" });
  const r = await pyro(
    ["env", "create", "two-sources", "--recipe", file, "--from-image", "localhost:1/x:1", "--json"],
    { home: freshHome() },
  );
  expect(r.json?.code).toBe("INVALID_INPUT");
  expect(r.json.message).toContain("exactly one");
});

test("a recipe name that would shadow the catalog is NAME_CONFLICT", async () => {
  const file = recipe("shadow", { base: "debian:12" });
  const r = await pyro(["env", "create", "debian-12", "--recipe", file, "--json"], { home: freshHome() });
  expect(r.json?.code).toBe("NAME_CONFLICT");
});
