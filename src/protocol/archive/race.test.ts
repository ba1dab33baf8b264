/**
 * The directory↔symlink swap race against the archive codec: while a process keeps
 * exchanging root/victim (a real directory) and root/victim.l (a symlink to a directory
 * outside the root), unpackTar must land zero entries outside and packTree must read zero
 * bytes from outside. Each case first proves its probe: a path-string writer (the old
 * unpack's lstat-then-open) or reader (the old pack's readdir/lstat/open on joined paths)
 * running against the same swap does reach outside, so the windows are really open.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { packTree } from "./pack.ts";
import { readTar, type TarWriteEntry, writeTar } from "./tar.ts";
import { chunked, collect, snapshotTree, swapper, tempDir } from "./testutil.ts";
import { unpackTar } from "./unpack.ts";

const INSIDE = "inside-the-root\n";
const OUTSIDE = "OUTSIDE-SECRET\n";
/** What an attempt that met the swapped state may fail with; anything else is a bug. */
const EXPECTED_FAILURES = new Set(["PATH_OUTSIDE_WORKSPACE", "FILE_NOT_FOUND", "NOT_A_DIRECTORY"]);

let tmp: Awaited<ReturnType<typeof tempDir>>;
let root: string;
let outside: string;
let swap: Bun.Subprocess | undefined;

beforeEach(async () => {
  tmp = await tempDir("archive-race");
  const base = realpathSync(tmp.path);
  root = join(base, "root");
  outside = join(base, "outside");
  mkdirSync(join(root, "victim", "sub"), { recursive: true });
  writeFileSync(join(root, "victim", "secret"), INSIDE);
  writeFileSync(join(root, "victim", "sub", "secret"), INSIDE);
  mkdirSync(join(outside, "sub"), { recursive: true });
  writeFileSync(join(outside, "secret"), OUTSIDE);
  writeFileSync(join(outside, "sub", "secret"), OUTSIDE);
  writeFileSync(join(outside, "only-outside"), OUTSIDE);
  symlinkSync(outside, join(root, "victim.l"));
});
afterEach(async () => {
  swap?.kill(9);
  await swap?.exited;
  swap = undefined;
  await tmp.cleanup();
});

/** Start the swap and wait until it has exchanged the names at least once. */
async function startSwap(): Promise<Bun.Subprocess> {
  swap = swapper(root, "victim", "victim.l");
  for (let i = 0; i < 500 && !lstatSync(join(root, "victim")).isSymbolicLink(); i++) await Bun.sleep(10);
  return swap;
}

const codeOf = (err: unknown) => (err as { code?: string }).code ?? String(err);

const file = (path: string, text: string): TarWriteEntry => {
  const data = new TextEncoder().encode(text);
  return {
    header: { path, type: "file", size: data.length, mode: 0o644, mtime: 1_650_000_000 },
    body: [data],
  };
};

describe("archive codec under a directory↔symlink swap", () => {
  test("unpackTar: a path-string writer escapes, the fd walk lands zero entries outside", async () => {
    const p = await startSwap();

    // the probe: the old way (lstat says "a directory", then open by path string) escapes
    let escaped = 0;
    for (let i = 0; i < 50_000 && escaped === 0; i++) {
      try {
        if (!lstatSync(join(root, "victim")).isDirectory()) continue;
        writeFileSync(join(root, "victim", `probe_${i}`), "x", { flag: "wx" });
        if (existsSync(join(outside, `probe_${i}`))) escaped++;
      } catch {}
    }
    expect(escaped).toBeGreaterThan(0);
    for (const n of readdirSync(outside)) if (n.startsWith("probe_")) rmSync(join(outside, n));
    const outsideBefore = await snapshotTree(outside, { mtimes: true });

    const ROUNDS = 300;
    let ok = 0;
    const failures: Record<string, number> = {};
    for (let r = 0; r < ROUNDS; r++) {
      // every kind of entry, at two levels under the swapped directory
      const entries: TarWriteEntry[] = [
        file(`victim/r${r}_a`, "a"),
        { header: { path: `victim/sub/d${r}`, type: "directory", mode: 0o755, mtime: 1_600_000_000 } },
        file(`victim/sub/d${r}/f`, "f"),
        { header: { path: `victim/l${r}`, type: "symlink", linkTarget: "/etc" } },
        { header: { path: `victim/sub/h${r}`, type: "hardlink", linkTarget: `victim/r${r}_a` } },
        file("victim/secret", INSIDE),
      ];
      try {
        await unpackTar(writeTar(entries), root);
        ok++;
      } catch (err) {
        failures[codeOf(err)] = (failures[codeOf(err)] ?? 0) + 1;
      }
    }
    expect(p.exitCode).toBeNull(); // the swap ran throughout
    p.kill(9);
    await p.exited;
    console.error(`unpack race: ${ok} ok, failures ${JSON.stringify(failures)}`);

    expect(await snapshotTree(outside, { mtimes: true })).toEqual(outsideBefore);
    for (const code of Object.keys(failures)) expect(EXPECTED_FAILURES.has(code)).toBe(true);
    // the race was on: some rounds went through, some met the symlink
    expect(ok).toBeGreaterThan(0);
    expect(ok).toBeLessThan(ROUNDS);
    // every round that went through landed in the raced directory, whatever its name now
    const real = ["victim", "victim.l"].map((n) => join(root, n)).find((d) => lstatSync(d).isDirectory())!;
    const landed = readdirSync(real).filter((n) => /^r\d+_a$/.test(n)).length;
    expect(landed).toBeGreaterThanOrEqual(ok);
    expect(readFileSync(join(real, "secret"), "utf8")).toBe(INSIDE);
  }, 120_000);

  test("packTree: a path-string reader escapes, the fd walk reads zero bytes from outside", async () => {
    const p = await startSwap();

    // the probe: reading by path string (what the old walk's open did) gets outside bytes
    let escaped = 0;
    for (let i = 0; i < 50_000 && escaped === 0; i++) {
      try {
        if (readFileSync(join(root, "victim", "secret"), "utf8") === OUTSIDE) escaped++;
      } catch {}
    }
    expect(escaped).toBeGreaterThan(0);

    const ROUNDS = 300;
    let ok = 0;
    let insideReads = 0;
    let outsideReads = 0;
    const failures: Record<string, number> = {};
    const names = new Set<string>();
    for (let r = 0; r < ROUNDS; r++) {
      try {
        const bytes = await collect(packTree(root, r % 2 ? "victim" : ""));
        for await (const e of readTar(chunked(bytes, 65536))) {
          names.add(e.path);
          const body = Buffer.from(await collect(e.body)).toString();
          if (body.includes(OUTSIDE.trim())) outsideReads++;
          if (body === INSIDE) insideReads++;
        }
        ok++;
      } catch (err) {
        failures[codeOf(err)] = (failures[codeOf(err)] ?? 0) + 1;
      }
    }
    expect(p.exitCode).toBeNull();
    p.kill(9);
    await p.exited;
    console.error(
      `pack race: ${ok} ok, ${insideReads} inside / ${outsideReads} outside reads, failures ${JSON.stringify(failures)}`,
    );

    expect(outsideReads).toBe(0);
    for (const code of Object.keys(failures)) expect(EXPECTED_FAILURES.has(code)).toBe(true);
    expect(ok).toBeGreaterThan(0);
    expect(insideReads).toBeGreaterThan(0); // the walk did descend into the raced directory
    expect([...names].filter((n) => n.includes("only-outside"))).toEqual([]);
  }, 120_000);
});

describe("resources", () => {
  test("unpack and pack close every fd, with more directories than the fd cache holds and on failure", async () => {
    const openFds = () => readdirSync("/proc/self/fd").length;
    const many: TarWriteEntry[] = [];
    for (let i = 0; i < 150; i++) many.push(file(`many/d${i}/e${i % 7}/f`, `${i}`));
    const dest = join(root, "dest");
    mkdirSync(dest);
    const ops = async () => {
      await unpackTar(writeTar(many), dest);
      await unpackTar(writeTar([file("victim.l/x", "x")]), root).then(
        () => expect.unreachable(),
        (err) => expect(codeOf(err)).toBe("PATH_OUTSIDE_WORKSPACE"),
      );
      await collect(packTree(dest, ""));
      const reader = packTree(root, "").getReader(); // cancelled midway
      await reader.read();
      await reader.cancel();
    };
    await ops(); // warm up lazily opened things (libc)
    const before = openFds();
    for (let i = 0; i < 3; i++) await ops();
    expect(openFds()).toBe(before);
    expect(readFileSync(join(dest, "many/d149/e2/f"), "utf8")).toBe("149");
  });
});
