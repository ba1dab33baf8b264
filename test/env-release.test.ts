/**
 * scripts/release.ts: the versioned release files (the single executable, an `env save`
 * archive per environment, SHA256SUMS, release.json) land in a fresh directory, the
 * checksums hold (`sha256sum -c`), an existing directory is refused, and `--registry` pushes
 * each environment to a docker-registry on this machine, from where `env pull` on another
 * PYRO_HOME installs it with the same digests. No guest: the environment is a small fake one
 * (the archive and push code only moves and verifies files).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { needs } from "./capabilities.ts";
import { ensureBuilt, freshHome, PYRO, pyro, REPO } from "./helpers.ts";
import { startRegistry, type TestRegistry } from "./registry.ts";

const VERSION = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version as string;
let home = "";
let work = "";

/** A tiny installed environment `fake:1` (version v1) whose manifest matches its files. */
function fakeEnvironment(h: string): void {
  const dir = join(h, "environments", "fake-1", "v1");
  mkdirSync(dir, { recursive: true });
  const kernel = new Uint8Array(4096).fill(7);
  const rootfs = new Uint8Array(65536).fill(9);
  writeFileSync(join(dir, "vmlinux"), kernel);
  writeFileSync(join(dir, "rootfs.ext4"), rootfs);
  const sha = (b: Uint8Array) => new Bun.CryptoHasher("sha256").update(b).digest("hex");
  const manifest = {
    name: "fake:1",
    version: "v1",
    kernel: { file: "vmlinux", sha256: sha(kernel), size: kernel.byteLength },
    rootfs: { file: "rootfs.ext4", sha256: sha(rootfs), size: rootfs.byteLength },
    agent_version: VERSION,
    protocol_version: 1,
    built_at: "2026-01-01T00:00:00.000Z",
    packages: [],
    custom: true,
    source: { kind: "archive", ref: "test", digest: "sha256:00" },
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
}

function release(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawnSync(
    [process.execPath, join(REPO, "scripts", "release.ts"), "--no-build", "--pyro", PYRO, ...args],
    {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...(process.env as Record<string, string>), PYRO_HOME: home, ...env },
    },
  );
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
  fakeEnvironment(home);
  work = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "release-"));
});

test("release.ts writes the executable, the environment archives, SHA256SUMS and release.json", async () => {
  const out = join(work, "r1");
  const r = release(["--out", out, "--env", "fake:1"]);
  expect(r.code, r.stderr).toBe(0);
  const exe = `pyro-${VERSION}-linux-x86_64`;
  const meta = JSON.parse(readFileSync(join(out, "release.json"), "utf8"));
  expect(meta.version).toBe(VERSION);
  expect(meta.files.map((f: any) => f.name)).toEqual([exe, "fake-1-v1.pyroenv.tar"]);
  expect(meta.files[1]).toMatchObject({
    kind: "environment",
    environment: "fake:1",
    environment_version: "v1",
  });
  const sums = Bun.spawnSync(["sha256sum", "-c", "SHA256SUMS"], { cwd: out, stdout: "pipe" });
  expect(sums.exitCode).toBe(0);
  expect(sums.stdout.toString()).toContain(`${exe}: OK`);
  expect(sums.stdout.toString()).toContain("fake-1-v1.pyroenv.tar: OK");
  // the executable is the one built, and runs
  const v = Bun.spawnSync([join(out, exe), "--version"], { stdout: "pipe" });
  expect(v.stdout.toString()).toContain(VERSION);
  // the archive loads into another home with the same digests
  const other = freshHome();
  const loaded = await pyro(["env", "load", join(out, "fake-1-v1.pyroenv.tar"), "--json"], { home: other });
  expect(loaded.code, loaded.stdout).toBe(0);
  const mine = JSON.parse(readFileSync(join(home, "environments", "fake-1", "v1", "manifest.json"), "utf8"));
  expect(loaded.json.manifest.rootfs.sha256).toBe(mine.rootfs.sha256);
  // never overwrites a release
  const again = release(["--out", out, "--env", "fake:1"]);
  expect(again.code).toBe(64);
  expect(again.stderr).toContain("never overwritten");
}, 120_000);

test("release.ts refuses an environment that is not installed, leaving no directory", () => {
  const out = join(work, "r-missing");
  const r = release(["--out", out, "--env", "debian:12-build"]);
  expect(r.code).not.toBe(0);
  expect(existsSync(out)).toBe(false);
}, 60_000);

let registry: TestRegistry | null = null;
afterAll(async () => {
  await registry?.stop();
});

needs("docker-registry").test(
  "release.ts --registry pushes each environment; env pull on another home gets the same digests",
  async () => {
    registry = await startRegistry();
    const out = join(work, "r2");
    const r = release(["--out", out, "--env", "fake:1", "--registry", `${registry.host}/rel`]);
    expect(r.code, r.stderr).toBe(0);
    const meta = JSON.parse(readFileSync(join(out, "release.json"), "utf8"));
    expect(meta.pushed).toHaveLength(1);
    expect(meta.pushed[0].ref).toContain(`${registry.host}/rel/fake:1`);
    expect(meta.pushed[0].digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const other = freshHome();
    const pulled = await pyro(["env", "pull", "fake:1", "--json"], {
      home: other,
      env: { PYRO_REGISTRY: `${registry.host}/rel` },
    });
    expect(pulled.code, pulled.stdout + pulled.stderr).toBe(0);
    // progress off a terminal: plain lines on stderr (no \r bar), stdout only the JSON
    expect(pulled.stderr).toMatch(/rootfs: downloaded: .+ \/ .+\n/);
    expect(pulled.stderr).not.toContain("\r");
    const mine = JSON.parse(
      readFileSync(join(home, "environments", "fake-1", "v1", "manifest.json"), "utf8"),
    );
    expect(pulled.json.manifest.rootfs.sha256).toBe(mine.rootfs.sha256);
    expect(pulled.json.manifest.kernel.sha256).toBe(mine.kernel.sha256);
    expect(pulled.json.manifest.custom).toBe(true);
  },
  120_000,
);
