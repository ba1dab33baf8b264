/**
 * A local apt repository for recipe tests, built here without network: one tiny package
 * (`pyro-hello`, a /usr/bin script) made by dpkg-deb, a flat repository (Packages + an
 * unsigned Release) that a recipe copies into the build guest and names as
 * `deb [trusted=yes] file:/opt/pyro-repo ./`.
 */
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const HELLO_OUTPUT = "hello from a recipe package";

function run(argv: string[]): string {
  const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

/** Build the repository under `dir/repo`; returns its path. */
export function makeAptRepo(dir: string): string {
  const pkg = join(dir, "pkg");
  mkdirSync(join(pkg, "DEBIAN"), { recursive: true });
  mkdirSync(join(pkg, "usr", "bin"), { recursive: true });
  writeFileSync(
    join(pkg, "DEBIAN", "control"),
    [
      "Package: pyro-hello",
      "Version: 1.0",
      "Architecture: all",
      "Maintainer: pyro tests <tests@pyro.invalid>",
      "Description: test package for pyro recipes",
      "",
    ].join("\n"),
  );
  writeFileSync(join(pkg, "usr", "bin", "pyro-hello"), `#!/bin/sh\necho "${HELLO_OUTPUT}"\n`);
  chmodSync(join(pkg, "usr", "bin", "pyro-hello"), 0o755);
  const repo = join(dir, "repo");
  mkdirSync(repo, { recursive: true });
  const deb = join(repo, "pyro-hello_1.0_all.deb");
  run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", pkg, deb]);
  const bytes = readFileSync(deb);
  const sha = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  const control = run(["dpkg-deb", "--field", deb]).trimEnd();
  const packages = `${control}\nFilename: ./pyro-hello_1.0_all.deb\nSize: ${statSync(deb).size}\nSHA256: ${sha}\n\n`;
  writeFileSync(join(repo, "Packages"), packages);
  const psha = new Bun.CryptoHasher("sha256").update(packages).digest("hex");
  writeFileSync(
    join(repo, "Release"),
    `Origin: pyro-tests\nLabel: pyro-tests\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n ${psha} ${Buffer.byteLength(packages)} Packages\n`,
  );
  return repo;
}

/** A recipe using the repository (network off: nothing leaves the machine). */
export function writeRecipe(dir: string, extra: Record<string, unknown> = {}): string {
  const recipe = {
    base: "debian:12",
    files: [{ source: "repo", dest: "/opt/pyro-repo" }],
    apt_sources: ["deb [trusted=yes] file:/opt/pyro-repo ./"],
    packages: ["pyro-hello"],
    commands: ["pyro-hello > /etc/recipe-proof"],
    env: { GREETING: "hi-from-recipe-env" },
    network: false,
    ...extra,
  };
  const file = join(dir, "hello.recipe.json");
  writeFileSync(file, `${JSON.stringify(recipe, null, 2)}\n`);
  return file;
}
