/**
 * pyro as one download, and environments as one file (issue 13, deliverable 4):
 * - a copy of dist/pyro alone in an empty directory runs `pyro run debian:12 -- true` in host
 *   compat and in a real guest, extracting its embedded agent into the cache (verified, a
 *   corrupt extraction replaced; `--version` extracts nothing);
 * - `env save` on one PYRO_HOME and `env load` on another give an environment that boots,
 *   with the digests the same; a damaged archive is refused with a stable code and leaves
 *   nothing installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { guestHome, SKIP_GUESTS } from "./guest-env.ts";
import { AGENT, ensureBuilt, freshHome, PYRO } from "./helpers.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const tmp = () => mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "one-file-"));

let dir = "";
let cache = "";
let lone = "";
/** sha256 of dist/pyro-agent when dist/pyro was copied (other jobs may rebuild dist/ later). */
let agentSha = "";

/** Run the lone copy of pyro from its own directory, with only the given environment. */
async function run(args: string[], env: Record<string, string>) {
  const p = Bun.spawn([lone, ...args], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: join(dir, "home-dir"),
      XDG_CACHE_HOME: cache,
      PYRO_BUILD_CACHE: process.env.PYRO_BUILD_CACHE ?? "",
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  let json: any = null;
  try {
    json = JSON.parse(stdout);
  } catch {}
  return { code, stdout, stderr, json };
}

/** Flip one byte of a file in place. */
function flipByte(path: string, at: number): void {
  const b = readFileSync(path);
  b[at] = (b[at] as number) ^ 0xff;
  writeFileSync(path, b);
}

beforeAll(async () => {
  await ensureBuilt();
  dir = tmp();
  cache = join(dir, "cache");
  lone = join(dir, "pyro");
  copyFileSync(PYRO, lone);
  agentSha = sha(readFileSync(AGENT));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("pyro is one file", () => {
  const extracted = () => join(cache, "pyro", "agent", agentSha, "pyro-agent");

  test("--version extracts nothing", async () => {
    const r = await run(["--version"], { PYRO_HOME: freshHome() });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^pyro \d/);
    expect(existsSync(join(cache, "pyro", "agent"))).toBe(false);
  });

  test("a lone copy runs `run debian:12 -- true` in host compat, with its embedded agent", async () => {
    expect(readdirSync(dir).filter((n) => n !== "cache")).toEqual(["pyro"]);
    const r = await run(["run", "debian:12", "--allow-host-compat", "--json", "--", "true"], {
      PYRO_HOME: freshHome(),
      PYRO_BACKEND: "host",
    });
    expect(r.code).toBe(0);
    expect(r.json.execution_mode).toBe("host_compat");
    expect(r.json.exit_code).toBe(0);
    // the agent came out of pyro: byte-identical to dist/pyro-agent, executable, in the cache
    expect(sha(readFileSync(extracted()))).toBe(agentSha);
    expect(statSync(extracted()).mode & 0o777).toBe(0o755);
    expect(readdirSync(dir).filter((n) => n !== "cache" && n !== "home-dir")).toEqual(["pyro"]);
  });

  test("a corrupt extracted agent is replaced before use", async () => {
    flipByte(extracted(), 1000);
    expect(sha(readFileSync(extracted()))).not.toBe(agentSha);
    const r = await run(["run", "--allow-host-compat", "--json", "--", "sh", "-c", "echo ok"], {
      PYRO_HOME: freshHome(),
      PYRO_BACKEND: "host",
    });
    expect(r.code).toBe(0);
    expect(r.json.stdout).toBe("ok\n");
    expect(sha(readFileSync(extracted()))).toBe(agentSha);
  });

  test.skipIf(SKIP_GUESTS)("real guest: a lone copy runs `run debian:12 -- true` in a microVM", async () => {
    const r = await run(["run", "debian:12", "--json", "--", "true"], { PYRO_HOME: await guestHome() });
    expect(r.code).toBe(0);
    expect(r.json.execution_mode).toBe("guest");
    expect(r.json.exit_code).toBe(0);
  });
});

/** A fake installed environment (save/load never look inside kernel or rootfs). */
function fakeEnvironment(home: string): void {
  const d = join(home, "environments", "debian-12", "1");
  mkdirSync(d, { recursive: true });
  // incompressible, so the rootfs layer is most of the archive (the corruption test relies on it)
  const kernel = new Uint8Array(randomBytes(300_000));
  const rootfs = new Uint8Array(randomBytes(2_000_000));
  writeFileSync(join(d, "vmlinux"), kernel);
  writeFileSync(join(d, "rootfs.ext4"), rootfs);
  const entry = (file: string, b: Uint8Array) => ({ file, sha256: sha(b), size: b.byteLength });
  const manifest = {
    name: "debian:12",
    version: "1",
    kernel: entry("vmlinux", kernel),
    rootfs: entry("rootfs.ext4", rootfs),
    agent_version: "0.0.0",
    protocol_version: 2,
    built_at: "2026-01-01T00:00:00.000Z",
    packages: [],
  };
  writeFileSync(join(d, "manifest.json"), JSON.stringify(manifest));
}

/** Everything under a home's environments/ (relative paths), to prove nothing was left. */
function envTree(home: string): string[] {
  const root = join(home, "environments");
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true }) as string[];
}

describe("env save / env load", () => {
  let src = "";
  let archive = "";
  let saved: any;
  beforeAll(async () => {
    src = freshHome();
    fakeEnvironment(src);
    archive = join(tmp(), "env.tar");
    const r = await run(["env", "save", "debian:12", "--output", archive, "--json"], { PYRO_HOME: src });
    expect(r.code).toBe(0);
    saved = r.json;
  });

  test("save writes one archive; load on another home installs identical files", async () => {
    expect(saved.output).toBe(archive);
    expect(saved.size_bytes).toBe(statSync(archive).size);
    expect(saved.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const dest = freshHome();
    const r = await run(["env", "load", archive, "--json"], { PYRO_HOME: dest });
    expect(r.code).toBe(0);
    expect(r.json.digest).toBe(saved.digest);
    for (const f of ["vmlinux", "rootfs.ext4", "manifest.json"]) {
      const a = readFileSync(join(src, "environments", "debian-12", "1", f));
      const b = readFileSync(join(r.json.dir, f));
      expect(sha(b)).toBe(sha(a));
    }
    expect(envTree(dest).some((p) => p.startsWith(".load-"))).toBe(false);
  });

  test("a damaged archive is refused (ENVIRONMENT_CORRUPT) and nothing is installed", async () => {
    const bad = join(tmp(), "bad.tar");
    copyFileSync(archive, bad);
    // the middle of the archive lies in the rootfs layer, the largest blob
    flipByte(bad, Math.floor(statSync(bad).size / 2));
    const dest = freshHome();
    const r = await run(["env", "load", bad, "--json"], { PYRO_HOME: dest });
    expect(r.code).toBe(65);
    expect(r.json.code).toBe("ENVIRONMENT_CORRUPT");
    expect(r.json.message).toContain("does not match its digest");
    expect(envTree(dest)).toEqual([]);
  });

  test("a damaged tar header or a file that is no archive is INVALID_INPUT", async () => {
    const bad = join(tmp(), "bad-header.tar");
    copyFileSync(archive, bad);
    flipByte(bad, 3); // inside the first entry's name: its header checksum no longer matches
    const notTar = join(tmp(), "notes.txt");
    writeFileSync(notTar, "just text\n".repeat(100));
    for (const f of [bad, notTar]) {
      const dest = freshHome();
      const r = await run(["env", "load", f, "--json"], { PYRO_HOME: dest });
      expect(r.code).toBe(64);
      expect(r.json.code).toBe("INVALID_INPUT");
      expect(envTree(dest)).toEqual([]);
    }
  });

  test("saving an environment that is not installed is ENVIRONMENT_NOT_FOUND", async () => {
    const r = await run(["env", "save", "debian:12-base", "--output", join(dir, "x.tar"), "--json"], {
      PYRO_HOME: src,
    });
    expect(r.json.code).toBe("ENVIRONMENT_NOT_FOUND");
    expect(existsSync(join(dir, "x.tar"))).toBe(false);
  });

  test.skipIf(SKIP_GUESTS)(
    "real guest: env save on one PYRO_HOME, env load on another, and the loaded environment boots",
    async () => {
      const home = await guestHome();
      const file = join(tmp(), "debian-12.tar");
      const s = await run(["env", "save", "debian:12", "-o", file, "--json"], { PYRO_HOME: home });
      expect(s.code).toBe(0);
      const dest = freshHome();
      const l = await run(["env", "load", file, "--json"], { PYRO_HOME: dest });
      expect(l.code).toBe(0);
      expect(l.json.digest).toBe(s.json.digest);
      const original = JSON.parse(
        readFileSync(join(home, "environments", "debian-12", s.json.version, "manifest.json"), "utf8"),
      );
      expect(l.json.manifest.rootfs.sha256).toBe(original.rootfs.sha256);
      expect(l.json.manifest.kernel.sha256).toBe(original.kernel.sha256);
      const r = await run(["run", "debian:12", "--json", "--", "cat", "/etc/debian_version"], {
        PYRO_HOME: dest,
      });
      expect(r.code).toBe(0);
      expect(r.json.execution_mode).toBe("guest");
      expect(r.json.stdout).toMatch(/^12\./);
      rmSync(file, { force: true });
    },
  );
});
