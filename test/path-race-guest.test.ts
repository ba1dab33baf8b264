/**
 * The directory↔symlink swap race (issue 8): while a process keeps swapping
 * /workspace/race between a real directory and a symlink to a directory outside the
 * workspace, file reads of race/hostname and file writes of race/pwned_<n> must never reach
 * outside. Before the race, each probe is shown to work: the inside file reads back, the
 * outside file's content is known, and a naive path-string reader running alongside the
 * swapper does get the outside content (so the swap really opens escape windows).
 *
 * Two variants: a real guest (QEMU), and host compat (the same agent code on the host, a
 * host directory as /workspace; no guest needed). Both go through the SDK.
 *
 * The real guest also races the archive paths: sync push (the agent unpacks each entry
 * below /workspace) and export (the agent packs a tree) while race↔race.l (→ /etc) swap.
 * Their probes: a path-string writer in the guest does create files in /etc, and the read
 * probe above shows a path-string reader gets /etc's content.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostRootDir } from "../src/manager/paths.ts";
import { type TarWriteEntry, writeTar } from "../src/protocol/archive/tar.ts";
import { collect } from "../src/protocol/archive/testutil.ts";
import { Pyro, type PyroError } from "../src/sdk/index.ts";
import { guest, guestHome } from "./guest-env.ts";
import { ensureBuilt, freshHome } from "./helpers.ts";

const INSIDE = "inside-the-workspace\n";
/** What a refused or lost attempt may fail with; anything else (INTERNAL...) is a bug. */
const EXPECTED_FAILURES = new Set(["PATH_OUTSIDE_WORKSPACE", "FILE_NOT_FOUND", "NOT_A_DIRECTORY"]);

interface Tally {
  reads_inside: number;
  reads_outside: number;
  reads_other: number;
  writes_ok: number;
  failures: Record<string, number>;
}

/** Alternate file read race/hostname and file write race/pwned_<n>, n attempts in all. */
async function hammer(py: Pyro, id: string, attempts: number, outsideText: string): Promise<Tally> {
  const t: Tally = { reads_inside: 0, reads_outside: 0, reads_other: 0, writes_ok: 0, failures: {} };
  for (let i = 0; i < attempts; i++) {
    try {
      if (i % 2 === 0) {
        const r = await py.readWorkspaceFile(id, "race/hostname");
        const text = r.encoding === "base64" ? Buffer.from(r.content, "base64").toString() : r.content;
        if (text === INSIDE) t.reads_inside++;
        else if (text === outsideText) t.reads_outside++;
        else t.reads_other++;
      } else {
        await py.writeWorkspaceFile(id, `race/pwned_${i}`, "pwned\n");
        t.writes_ok++;
      }
    } catch (err) {
      const code = (err as PyroError).code ?? String(err);
      t.failures[code] = (t.failures[code] ?? 0) + 1;
    }
  }
  return t;
}

function checkTally(t: Tally, attempts: number): void {
  expect(t.reads_outside).toBe(0);
  expect(t.reads_other).toBe(0);
  for (const code of Object.keys(t.failures)) expect(EXPECTED_FAILURES.has(code)).toBe(true);
  const failed = Object.values(t.failures).reduce((a, b) => a + b, 0);
  expect(t.reads_inside + t.writes_ok + failed).toBe(attempts);
  // the race was on: some attempts went through, some met the swapped state
  expect(t.reads_inside + t.writes_ok).toBeGreaterThan(0);
  expect(failed).toBeGreaterThan(0);
}

/**
 * Swap `race` (the directory) and `race.l` (a symlink to `target`) with
 * renameat2(RENAME_EXCHANGE) as fast as possible: `race` is always one or the other, never
 * missing (a missing `race` would let a write create it and end the race).
 */
const perlSwapper = (target: string, pidFile: string) =>
  `open(my $p, ">", "${pidFile}") or die; print $p $$; close $p; symlink("${target}", "race.l") or die; ` +
  // (perl's syscall may write into string arguments: they must be variables)
  `my ($x, $y) = ("race", "race.l"); while (1) { syscall(316, -100, $x, -100, $y, 2) == 0 or die "renameat2: $!" }`;

guest.describe("real guest: path resolution race", () => {
  const ATTEMPTS = 1000;
  let py: Pyro;
  let id = "";
  let etcHostname = "";

  beforeAll(async () => {
    py = new Pyro({ home: await guestHome() });
    id = String((await py.createWorkspace({ environment: "debian:12" })).workspace_id);
  }, 1_800_000);
  afterAll(async () => {
    if (id) await py.deleteWorkspace(id);
  }, 120_000);

  const sh = async (command: string) => {
    const r = await py.execWorkspace(id, command, { timeout_seconds: 120 });
    expect(r.exit_code).toBe(0);
    return r.stdout;
  };

  test("real guest: the probes work (inside content, outside content, a naive reader escapes)", async () => {
    await sh(`mkdir -p /workspace/race && printf '${INSIDE.trim()}\\n' > /workspace/race/hostname`);
    etcHostname = await sh("cat /etc/hostname");
    expect(etcHostname.length).toBeGreaterThan(1);
    expect(etcHostname).not.toBe(INSIDE);
    const r = await py.readWorkspaceFile(id, "race/hostname");
    expect(r.content).toBe(INSIDE);
    await sh("touch /etc/pwned_probe");
    expect(await sh("ls -1 /etc | grep '^pwned_' || true")).toBe("pwned_probe\n");
    await sh("rm /etc/pwned_probe");

    // the swapper: its own session, so nothing the agent does to exec groups stops it
    await sh(
      `cd /workspace && setsid -f perl -e '${perlSwapper("/etc", "/tmp/race-swapper.pid")}' </dev/null >/dev/null 2>&1; ` +
        "for i in 1 2 3 4 5 6 7 8 9 10; do [ -s /tmp/race-swapper.pid ] && break; sleep 0.2; done; cat /tmp/race-swapper.pid",
    );
    // a reader that trusts path strings (what the kernel does for `cat`) does escape
    const naive = await sh(
      `cd /workspace && E="$(cat /etc/hostname)" perl -e 'my $n = 0; for (1..3000) { if (open(my $f, "<", "race/hostname")) { my $c = <$f>; chomp $c; $n++ if $c eq $ENV{E}; } } print $n'`,
    );
    expect(Number(naive)).toBeGreaterThan(0);
  }, 300_000);

  test(`real guest: ${ATTEMPTS} file read/write attempts during the swap never reach /etc`, async () => {
    expect(etcHostname).not.toBe(""); // the probes ran
    const t = await hammer(py, id, ATTEMPTS, etcHostname);
    await sh('kill "$(cat /tmp/race-swapper.pid)"; sleep 0.5');
    console.error(`real guest race tally: ${JSON.stringify(t)}`);
    checkTally(t, ATTEMPTS);
    expect(await sh("ls -1 /etc | grep '^pwned_' || true")).toBe("");
    // every write that succeeded landed in the raced directory (whatever its name now)
    const inside = await sh(
      "cd /workspace && for d in race race.l; do [ -L $d ] || ls -1 $d; done | grep -c '^pwned_' || true",
    );
    expect(Number(inside)).toBe(t.writes_ok);
  }, 1_800_000);

  /** A fresh race/ (inside content) and race.l → /etc, swapped until fn returns. */
  async function duringSwap<T>(fn: () => Promise<T>): Promise<T> {
    await sh(
      `cd /workspace && rm -rf race race.l && mkdir race && printf '${INSIDE.trim()}\\n' > race/hostname && rm -f /tmp/race-swapper.pid && ` +
        `setsid -f perl -e '${perlSwapper("/etc", "/tmp/race-swapper.pid")}' </dev/null >/dev/null 2>&1; ` +
        "for i in 1 2 3 4 5 6 7 8 9 10; do [ -s /tmp/race-swapper.pid ] && break; sleep 0.2; done; cat /tmp/race-swapper.pid",
    );
    try {
      return await fn();
    } finally {
      // still swapping at the end (kill fails otherwise): the race lasted the whole run
      await sh('kill "$(cat /tmp/race-swapper.pid)"; sleep 0.5');
    }
  }

  /** Every path in a host tree, without following symlinks (the export keeps them as links). */
  const hostFiles = (top: string): string[] => {
    if (!lstatSync(top).isDirectory()) return [top];
    return [top, ...readdirSync(top).flatMap((n) => hostFiles(join(top, n)))];
  };
  const hostTmp = () => mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "race-"));

  test("real guest: sync push during the swap lands zero entries in /etc (a path-string writer does)", async () => {
    expect(etcHostname).not.toBe(""); // the probes ran
    const src = hostTmp();
    try {
      // an archive of files only: a "race" directory entry would replace the link and end the race
      const file = (path: string): TarWriteEntry => ({
        header: { path, type: "file", size: 6, mode: 0o644 },
        body: [new TextEncoder().encode("pwned\n")],
      });
      const archive = join(src, "push.tar");
      writeFileSync(
        archive,
        await collect(
          writeTar(["race/pwned_sync_a", "race/pwned_sync_b", "race/pwned_dir/pwned_sync_c"].map(file)),
        ),
      );
      const ATTEMPTS = 40;
      const tally = await duringSwap(async () => {
        // the probe: the old extractor's steps, lstat says "directory", then (after the
        // event-loop turn between its awaited calls; 1 ms here) a create by path string
        const naive = await sh(
          `cd /workspace && perl -e 'for (1..2000) { if (-d "race" && !-l "race") { select(undef, undef, undef, 0.001); open(my $f, ">", "race/pwned_probe_$_") and close $f; last if -e "/etc/pwned_probe_$_" } }'; ls -1 /etc | grep -c '^pwned_probe_' || true`,
        );
        expect(Number(naive)).toBeGreaterThan(0);
        await sh("rm -f /etc/pwned_probe_*");
        const t = { ok: 0, failures: {} as Record<string, number> };
        for (let i = 0; i < ATTEMPTS; i++) {
          try {
            await py.syncPush(id, archive);
            t.ok++;
          } catch (err) {
            const code = (err as PyroError).code ?? String(err);
            t.failures[code] = (t.failures[code] ?? 0) + 1;
          }
        }
        return t;
      });
      console.error(`real guest sync push race tally: ${JSON.stringify(tally)}`);
      expect(await sh("ls -1a /etc | grep '^pwned_' || true")).toBe("");
      for (const code of Object.keys(tally.failures)) expect(EXPECTED_FAILURES.has(code)).toBe(true);
      const failed = Object.values(tally.failures).reduce((a, b) => a + b, 0);
      expect(tally.ok + failed).toBe(ATTEMPTS);
      expect(tally.ok).toBeGreaterThan(0);
      expect(failed).toBeGreaterThan(0); // some pushes met race as the link and were refused
      // what went through is in the raced directory, whatever its name now
      const inside = await sh(
        "cd /workspace && for d in race race.l; do [ -L $d ] || (cd $d && [ -f pwned_sync_a ] && [ -f pwned_dir/pwned_sync_c ] && echo landed); done",
      );
      expect(inside).toBe("landed\n");
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  }, 1_800_000);

  test("real guest: export during the swap reads zero bytes from /etc", async () => {
    expect(etcHostname).not.toBe(""); // the probes ran (a path-string reader gets /etc/hostname)
    const out = hostTmp();
    const ATTEMPTS = 40;
    const t = { ok: 0, inside: 0, outside: 0, failures: {} as Record<string, number> };
    try {
      await duringSwap(async () => {
        for (let i = 0; i < ATTEMPTS; i++) {
          const dest = join(out, `e${i}`);
          try {
            // a file through the raced directory, and the whole tree (which descends into it)
            await py.exportWorkspace(id, i % 2 ? "race/hostname" : "/workspace", dest);
            t.ok++;
            const files = hostFiles(dest);
            for (const f of files) {
              if (f.endsWith("passwd")) t.outside++; // /etc's own files, archived through the link
              if (!lstatSync(f).isFile()) continue;
              const text = readFileSync(f, "utf8");
              if (text === INSIDE) t.inside++;
              if (text === etcHostname) t.outside++;
            }
          } catch (err) {
            const code = (err as PyroError).code ?? String(err);
            t.failures[code] = (t.failures[code] ?? 0) + 1;
          }
          rmSync(dest, { recursive: true, force: true });
        }
      });
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    console.error(`real guest export race tally: ${JSON.stringify(t)}`);
    expect(t.outside).toBe(0);
    for (const code of Object.keys(t.failures)) expect(EXPECTED_FAILURES.has(code)).toBe(true);
    const failed = Object.values(t.failures).reduce((a, b) => a + b, 0);
    expect(t.ok + failed).toBe(ATTEMPTS);
    expect(t.inside).toBeGreaterThan(0); // exports did read the raced directory's file
  }, 1_800_000);
});

describe("host compat: path resolution race", () => {
  const ATTEMPTS = 300;
  const OUTSIDE = "outside-the-workspace\n";
  let py: Pyro;
  let id = "";
  let root = "";
  let outsideDir = "";
  let swapper: ReturnType<typeof Bun.spawn> | undefined;

  beforeAll(async () => {
    await ensureBuilt();
    const home = freshHome();
    py = new Pyro({ home });
    id = String((await py.createWorkspace({ allow_host_compat: true })).workspace_id);
    root = hostRootDir(home, id);
    outsideDir = join(home, "outside");
    mkdirSync(outsideDir);
    writeFileSync(join(outsideDir, "hostname"), OUTSIDE);
  }, 120_000);
  afterAll(async () => {
    swapper?.kill(9);
    await swapper?.exited;
    if (id) await py.deleteWorkspace(id);
  }, 60_000);

  test(`${ATTEMPTS} file read/write attempts during the swap never leave the root`, async () => {
    mkdirSync(join(root, "race"));
    writeFileSync(join(root, "race", "hostname"), INSIDE);
    expect((await py.readWorkspaceFile(id, "race/hostname")).content).toBe(INSIDE);

    // the same loop as the guest's perl one, in bun (perl need not exist on the host)
    const js = `const { dlopen, FFIType, ptr } = require("bun:ffi"); require("node:fs").symlinkSync(${JSON.stringify(outsideDir)}, "race.l");
      const c = dlopen("libc.so.6", { renameat2: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 } }).symbols;
      const a = Buffer.from("race\\0"), b = Buffer.from("race.l\\0");
      for (;;) if (c.renameat2(-100, ptr(a), -100, ptr(b), 2) !== 0) process.exit(3);`;
    swapper = Bun.spawn([process.execPath, "-e", js], {
      cwd: root,
      stdout: "ignore",
      stderr: "ignore",
    });
    // the probe: a path-string reader on the host does get the outside file
    let naive = 0;
    for (let i = 0; i < 20_000 && naive === 0; i++) {
      try {
        if (readFileSync(join(root, "race", "hostname"), "utf8") === OUTSIDE) naive++;
      } catch {}
    }
    expect(naive).toBeGreaterThan(0);

    const t = await hammer(py, id, ATTEMPTS, OUTSIDE);
    expect(swapper.exitCode).toBeNull(); // still swapping: the race lasted the whole run
    swapper.kill(9);
    await swapper.exited;
    console.error(`host compat race tally: ${JSON.stringify(t)}`);
    checkTally(t, ATTEMPTS);
    expect(readdirSync(outsideDir).sort()).toEqual(["hostname"]);
    const written = ["race", "race.l"]
      .filter((d) => lstatSync(join(root, d)).isDirectory())
      .flatMap((d) => readdirSync(join(root, d)).filter((n) => n.startsWith("pwned_")));
    expect(written.length).toBe(t.writes_ok);
  }, 300_000);
});
