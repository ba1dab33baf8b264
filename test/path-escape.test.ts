/**
 * The path-escape matrix: every entry point that takes a path or an archive, against every
 * way out (`..`, absolute names, symlinks and hardlinks pointing out, device files, very long
 * names), as one table. Each cell pins the error code (or, where the entry is kept inside,
 * success), and after the whole table nothing outside the workspace has changed: a sentinel
 * directory beside it (its listing and contents) and the absolute targets the cells aim at.
 * The probes work: `out` really points at the sentinel (a host `ls` through it sees the
 * secret), and the workspace itself is readable and writable by the same commands.
 *
 * Host compat runs the whole table (what test/loop.ts covers is repeated only where a cell
 * needs it for the row to be complete). Cells already covered elsewhere: race windows in
 * test/path-race-guest.test.ts, archive internals in src/protocol/archive/*.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { type TarWriteEntry, writeTar } from "../src/protocol/archive/tar.ts";
import { ensureBuilt, freshHome, pyro } from "./helpers.ts";

const LONG_COMPONENT = "n".repeat(300); // > NAME_MAX (255)
const LONG_PATH = `${"d".repeat(200)}/`.repeat(25).concat("f"); // > PATH_MAX (4096)

let home = "";
let tmp = "";
let outside = ""; // the sentinel: nothing in it may change
let id = "";
const ABS = "/tmp/pyro-escape-matrix-abs"; // absolute archive names aim here

async function tar(path: string, entries: TarWriteEntry[], raw?: (b: Uint8Array) => void): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const c of writeTar(entries)) parts.push(c);
  const bytes = new Uint8Array(Buffer.concat(parts));
  raw?.(bytes);
  writeFileSync(path, bytes);
  return path;
}
const file = (path: string, text = "x"): TarWriteEntry => ({
  header: { path, type: "file", size: text.length, mode: 0o644 },
  body: [new TextEncoder().encode(text)],
});
const link = (path: string, type: "symlink" | "hardlink", linkTarget: string): TarWriteEntry => ({
  header: { path, type, linkTarget, mode: 0o777 },
});
/** Turn the first header into a character device (typeflag 3) and fix its checksum. */
function asDevice(b: Uint8Array) {
  b[156] = 0x33;
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[i] as number;
  b.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
}

function listing(dir: string): string[] {
  const out: string[] = [];
  for (const n of readdirSync(dir, { recursive: true }) as string[]) {
    const p = join(dir, n);
    out.push(`${n}:${existsSync(p) ? readFileSync(p, "latin1").length : "dangling"}`);
  }
  return out.sort();
}

const ws = (...args: string[]) => pyro(["workspace", ...args], { home });
let outsideBefore: string[] = [];

beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
  tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "escape-"));
  outside = join(tmp, "outside");
  mkdirSync(outside);
  writeFileSync(join(outside, "secret"), "secret\n");
  const seed = join(tmp, "seed");
  mkdirSync(join(seed, "dir"), { recursive: true });
  writeFileSync(join(seed, "dir", "inside.txt"), "inside\n");
  symlinkSync(outside, join(seed, "out")); // absolute link out
  symlinkSync("../../../..", join(seed, "up")); // relative link out
  const c = await pyro(["workspace", "create", "--allow-host-compat", "--seed-path", seed, "--json"], {
    home,
  });
  if (c.code !== 0) throw new Error(`create failed: ${c.stdout}${c.stderr}`);
  id = c.json.workspace_id;
  outsideBefore = listing(outside);
}, 120_000);
afterAll(async () => {
  if (id) await ws("delete", id);
});

type Cell = { entry: string; vector: string; args: () => Promise<string[]> | string[]; code: string | null };
const patchVia = (name: string) => `--- a/${name}\n+++ b/${name}\n@@ -1 +1 @@\n-secret\n+pwned\n`;

/** Archive vectors, each run through seed (create) and sync push. */
const ARCHIVES: Array<{ vector: string; make: (p: string) => Promise<string>; code: string | null }> = [
  { vector: "entry with ..", make: (p) => tar(p, [file("a/../../x")]), code: "PATH_OUTSIDE_WORKSPACE" },
  { vector: "absolute entry", make: (p) => tar(p, [file(`${ABS}/x`)]), code: "PATH_OUTSIDE_WORKSPACE" },
  {
    vector: "symlink out, then a file through it",
    make: (p) => tar(p, [link("o", "symlink", "/tmp"), file("o/pyro-escape-matrix-through")]),
    code: "PATH_OUTSIDE_WORKSPACE",
  },
  {
    vector: "hardlink to a file outside",
    make: (p) => tar(p, [link("h", "hardlink", "../../outside/secret")]),
    code: "PATH_OUTSIDE_WORKSPACE",
  },
  // devices, fifos and other special entries are refused as a whole archive
  { vector: "device file", make: (p) => tar(p, [file("dev")], asDevice), code: "PATH_OUTSIDE_WORKSPACE" },
  {
    vector: "name component > 255 bytes",
    make: (p) => tar(p, [file(LONG_COMPONENT)]),
    code: "INVALID_INPUT",
  },
];

const CELLS: Cell[] = [
  ...ARCHIVES.flatMap((a, i): Cell[] => [
    {
      entry: "seed",
      vector: a.vector,
      args: async () => [
        "create",
        "--allow-host-compat",
        "--seed-path",
        await a.make(join(tmp, `seed-${i}.tar`)),
        "--json",
      ],
      code: a.code,
    },
    {
      entry: "sync push",
      vector: a.vector,
      args: async () => ["sync", "push", id, await a.make(join(tmp, `sync-${i}.tar`)), "--json"],
      code: a.code,
    },
  ]),
  // > PATH_MAX in total but every component short: the host-side seed refuses it; the agent
  // creates it inside (it walks one component at a time with openat, so length is no escape).
  {
    entry: "seed",
    vector: "path > 4096 bytes",
    args: async () => [
      "create",
      "--allow-host-compat",
      "--seed-path",
      await tar(join(tmp, "seed-long.tar"), [file(LONG_PATH)]),
      "--json",
    ],
    code: "INVALID_INPUT",
  },
  {
    entry: "sync push",
    vector: "path > 4096 bytes (created inside)",
    args: async () => [
      "sync",
      "push",
      id,
      await tar(join(tmp, "sync-long.tar"), [file(LONG_PATH)]),
      "--json",
    ],
    code: null,
  },
  // Paths through a symlink that points out (absolute `out`, relative `up`), .. and absolute.
  ...(["out", "up/tmp"] as const).flatMap((via): Cell[] => [
    {
      entry: "file read",
      vector: `through ${via}`,
      args: () => ["file", "read", id, `${via}/secret`, "--json"],
      code: "PATH_OUTSIDE_WORKSPACE",
    },
    {
      entry: "file write",
      vector: `through ${via}`,
      args: () => ["file", "write", id, `${via}/pwned`, "--text", "x", "--json"],
      code: "PATH_OUTSIDE_WORKSPACE",
    },
    {
      entry: "file list",
      vector: `through ${via}`,
      args: () => ["file", "list", id, via, "--json"],
      code: "PATH_OUTSIDE_WORKSPACE",
    },
    {
      entry: "patch apply",
      vector: `through ${via}`,
      args: () => ["patch", "apply", id, "--patch", patchVia(`${via}/secret`), "--json"],
      code: "PATH_OUTSIDE_WORKSPACE",
    },
    {
      entry: "export",
      vector: `through ${via}`,
      args: () => [
        "export",
        id,
        `${via}/secret`,
        "--output",
        join(tmp, `never-${via.replace("/", "-")}`),
        "--json",
      ],
      code: "PATH_OUTSIDE_WORKSPACE",
    },
  ]),
  {
    entry: "file list",
    vector: "..",
    args: () => ["file", "list", id, "..", "--json"],
    code: "PATH_OUTSIDE_WORKSPACE",
  },
  {
    entry: "file write",
    vector: "absolute",
    args: () => ["file", "write", id, `${ABS}/w`, "--text", "x", "--json"],
    code: "PATH_OUTSIDE_WORKSPACE",
  },
  {
    entry: "file write",
    vector: "name component > 255 bytes",
    args: () => ["file", "write", id, LONG_COMPONENT, "--text", "x", "--json"],
    code: "INVALID_INPUT",
  },
  {
    entry: "file read",
    vector: "path > 4096 bytes",
    args: () => ["file", "read", id, LONG_PATH, "--json"],
    code: "INVALID_INPUT",
  },
  {
    entry: "export",
    vector: "the symlink itself (kept as a link, not followed)",
    args: () => ["export", id, "out", "--output", join(tmp, "exported-link"), "--json"],
    code: null,
  },
];

/** Disk tools read a stopped workspace: the same symlinks must not lead out. */
const DISK_CELLS: Cell[] = (["out", "up/tmp"] as const).flatMap((via): Cell[] => [
  {
    entry: "disk read",
    vector: `through ${via}`,
    args: () => ["disk", "read", id, `${via}/secret`, "--json"],
    code: "PATH_OUTSIDE_WORKSPACE",
  },
  {
    entry: "disk list",
    vector: `through ${via}`,
    args: () => ["disk", "list", id, via, "--json"],
    code: "PATH_OUTSIDE_WORKSPACE",
  },
]);

describe("path-escape matrix (host compat)", () => {
  test("the probes work: out reaches the sentinel from the host, and the same commands work inside", async () => {
    expect(readdirSync(join(tmp, "seed", "out"))).toEqual(["secret"]);
    expect((await ws("file", "read", id, "dir/inside.txt", "--json")).json.content).toBe("inside\n");
    expect((await ws("file", "write", id, "dir/new.txt", "--text", "ok", "--json")).code).toBe(0);
    expect((await ws("file", "list", id, "dir", "--json")).json.entries.length).toBe(2);
    const exp = await ws("export", id, "dir/inside.txt", "--output", join(tmp, "inside-export"), "--json");
    expect(exp.code).toBe(0);
    const p = await ws(
      "patch",
      "apply",
      id,
      "--patch",
      "--- a/dir/new.txt\n+++ b/dir/new.txt\n@@ -1 +1 @@\n-ok\n\\ No newline at end of file\n+ok2\n",
      "--json",
    );
    expect(p.code).toBe(0);
  });

  for (const cell of CELLS) {
    test(`${cell.entry} × ${cell.vector} → ${cell.code ?? "ok, kept inside"}`, async () => {
      const args = await cell.args();
      const r = await ws(...args);
      if (r.json?.workspace_id && args[0] === "create") await ws("delete", r.json.workspace_id);
      expect({
        cell: `${cell.entry} × ${cell.vector}`,
        code: r.json?.code ?? (r.code === 0 ? null : `exit ${r.code}`),
      }).toEqual({
        cell: `${cell.entry} × ${cell.vector}`,
        code: cell.code,
      });
    });
  }

  test("stopped: disk read/list through the same symlinks", async () => {
    expect((await ws("stop", id)).code).toBe(0);
    try {
      expect((await ws("disk", "read", id, "dir/inside.txt", "--json")).json.content).toBe("inside\n"); // probe
      for (const cell of DISK_CELLS) {
        const r = await ws(...(await cell.args()));
        expect({ cell: `${cell.entry} × ${cell.vector}`, code: r.json?.code ?? null }).toEqual({
          cell: `${cell.entry} × ${cell.vector}`,
          code: cell.code,
        });
      }
    } finally {
      await ws("start", id);
    }
  });

  test("after every cell: nothing outside changed, nothing landed at the targets", () => {
    expect(listing(outside)).toEqual(outsideBefore);
    expect(existsSync(ABS)).toBe(false);
    expect(existsSync("/tmp/pyro-escape-matrix-through")).toBe(false);
    expect(existsSync(join(tmp, "never-out"))).toBe(false);
    expect(existsSync(join(tmp, "never-up-tmp"))).toBe(false);
    // the exported symlink is a link on the host, not a copy of what it points at
    expect(lstatSync(join(tmp, "exported-link")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(tmp, "exported-link"))).toBe(outside);
    console.log(
      `path-escape matrix: ${CELLS.length + DISK_CELLS.length} cells (${ARCHIVES.length} archive vectors × seed, sync push; symlink/../absolute/long names × read, write, list, patch, export, disk read, disk list)`,
    );
  });
});
