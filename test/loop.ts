/**
 * The repro → fix loop and the host-crossing checks, written once and run on both
 * backends: host compat (fast) and a real guest (named "real guest ..." for the counter).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { pyro } from "./helpers.ts";

const FAILING_CHECK = `#!/bin/sh
# the project's check: add.sh must print 5
[ "$(sh add.sh 2 3)" = "5" ] || { echo "FAIL: add.sh 2 3 = $(sh add.sh 2 3)" >&2; exit 1; }
echo ok
`;
const ADD_BROKEN = `echo $(( $1 - $2 ))\n`;
const ADD_FIXED = `echo $(( $1 + $2 ))\n`;
export const FIX_PATCH = `diff --git a/add.sh b/add.sh
--- a/add.sh
+++ b/add.sh
@@ -1 +1 @@
-echo $(( $1 - $2 ))
+echo $(( $1 + $2 ))
`;

export function makeRepo(dir: string): string {
  mkdirSync(join(dir, "repo", "docs"), { recursive: true });
  writeFileSync(join(dir, "repo", "check.sh"), FAILING_CHECK, { mode: 0o755 });
  writeFileSync(join(dir, "repo", "add.sh"), ADD_BROKEN);
  writeFileSync(join(dir, "repo", "docs", "README"), "a small repo\n");
  return join(dir, "repo");
}

/** A tar whose entry climbs out of the destination (`../escaped.txt`). */
export async function makeEvilTar(dir: string): Promise<string> {
  const { writeTar } = await import("../src/protocol/archive/tar.ts");
  const parts: Uint8Array[] = [];
  const body = new TextEncoder().encode("pwned\n");
  for await (const c of writeTar([
    {
      header: { path: "../escaped.txt", type: "file", mode: 0o644, size: body.byteLength, mtime: 0 },
      body: [body],
    } as any,
  ]))
    parts.push(c);
  const file = join(dir, "evil.tar");
  writeFileSync(file, Buffer.concat(parts));
  return file;
}

export function loopSuite(label: string, opts: { home: () => string; createArgs: string[]; guest: boolean }) {
  describe(`${label}: repro-fix loop`, () => {
    let tmp = "";
    let id = "";
    const home = () => opts.home();
    beforeAll(async () => {
      tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "loop-"));
      const repo = makeRepo(tmp);
      const c = await pyro(["workspace", "create", ...opts.createArgs, "--seed-path", repo, "--json"], {
        home: home(),
      });
      if (c.code !== 0) throw new Error(`create failed: ${c.stdout}${c.stderr}`);
      id = c.json.workspace_id;
      expect(c.json.workspace_seed).toEqual({ origin_kind: "directory", origin_ref: repo });
    }, 300_000);
    afterAll(async () => {
      if (id) await pyro(["workspace", "delete", id], { home: home() });
    });
    const ws = (...args: string[]) => pyro(["workspace", ...args], { home: home() });

    test(`${label}: failing check → read → patch → passing check → diff → export → reset`, async () => {
      const fail = await ws("exec", id, "--json", "--", "sh", "check.sh");
      expect(fail.code).toBe(1);
      expect(fail.json.stderr).toContain("FAIL: add.sh 2 3 = -1");

      const read = await ws("file", "read", id, "add.sh", "--json");
      expect(read.json.content).toBe(ADD_BROKEN);
      expect(read.json.truncated).toBe(false);
      const partial = await ws("file", "read", id, "check.sh", "--max-bytes", "10", "--json");
      expect(partial.json.content).toBe(FAILING_CHECK.slice(0, 10));
      expect(partial.json.truncated).toBe(true);
      const oversized = await ws("file", "read", id, "add.sh", "--max-bytes", "999999999", "--json");
      expect(oversized.json.code).toBe("INVALID_INPUT");
      expect(oversized.code).toBe(64);
      const listing = await ws("file", "list", id, "--recursive", "--json");
      expect(listing.json.entries.map((e: any) => e.path)).toEqual(
        expect.arrayContaining(["/workspace/add.sh", "/workspace/docs/README"]),
      );

      const empty = await ws("diff", id, "--json");
      expect(empty.json.patch).toBe("");
      expect(empty.json.files).toEqual([]);

      // The patch goes in through a file, like an agent would hand it over.
      writeFileSync(join(tmp, "fix.patch"), FIX_PATCH);
      const applied = await ws("patch", "apply", id, "--patch-file", join(tmp, "fix.patch"), "--json");
      expect(applied.code).toBe(0);
      expect(applied.json.files).toEqual([expect.objectContaining({ path: "add.sh", status: "modified" })]);

      const pass = await ws("exec", id, "--json", "--", "sh", "check.sh");
      expect(pass.code).toBe(0);
      expect(pass.json.stdout).toBe("ok\n");

      const diff = await ws("diff", id, "--json");
      expect(diff.json.files.map((f: any) => [f.path, f.status])).toEqual([["add.sh", "modified"]]);
      expect(diff.json.patch).toContain("-echo $(( $1 - $2 ))");
      expect(diff.json.patch).toContain("+echo $(( $1 + $2 ))");
      const human = await ws("diff", id);
      expect(human.stdout).toContain("+++ b/add.sh");

      const out = join(tmp, "exported-add.sh");
      const exp = await ws("export", id, "add.sh", "--output", out, "--json");
      expect(exp.code).toBe(0);
      expect(readFileSync(out, "utf8")).toBe(ADD_FIXED);
      const dirOut = join(tmp, "exported-docs");
      await ws("export", id, "docs", "--output", dirOut);
      expect(readFileSync(join(dirOut, "README"), "utf8")).toBe("a small repo\n");

      const summary = await ws("summary", id, "--json");
      expect(summary.json.commands.count).toBe(2);
      expect(summary.json.commands.failed).toBe(1);
      expect(summary.json.exports.length).toBe(2);
      expect(summary.json.changes.files.map((f: any) => f.path)).toEqual(["add.sh"]);

      const bootBefore = (await ws("exec", id, "--json", "--", "cat", "/proc/sys/kernel/random/boot_id")).json
        .stdout;
      if (opts.guest) await ws("exec", id, "--", "sh", "-c", "echo junk > /root/outside.txt");
      const reset = await ws("reset", id, "--json");
      expect(reset.code).toBe(0);
      expect(reset.json.workspace_id).toBe(id);
      expect(reset.json.restored_from).toBe("baseline");
      const back = await ws("file", "read", id, "add.sh", "--json");
      expect(back.json.content).toBe(ADD_BROKEN);
      expect((await ws("diff", id, "--json")).json.patch).toBe("");
      expect((await ws("logs", id, "--json")).json.count).toBe(0);
      if (opts.guest) {
        const outside = await ws(
          "exec",
          id,
          "--json",
          "--",
          "sh",
          "-c",
          "test -e /root/outside.txt && echo present || echo gone",
        );
        expect(outside.json.stdout).toBe("gone\n");
        const bootAfter = (await ws("exec", id, "--json", "--", "cat", "/proc/sys/kernel/random/boot_id"))
          .json.stdout;
        expect(bootAfter).not.toBe(bootBefore);
      }
    });

    test(`${label}: snapshots restore their own content and keep the diff baseline`, async () => {
      await ws("file", "write", id, "notes/todo.txt", "--text", "snap me\n");
      const snap = await ws("snapshot", "create", id, "checkpoint", "--json");
      expect(snap.json.name).toBe("checkpoint");
      await ws("file", "write", id, "notes/todo.txt", "--text", "changed after\n");
      const list = await ws("snapshot", "list", id, "--json");
      expect(list.json.snapshots.map((s: any) => s.name)).toEqual(["baseline", "checkpoint"]);
      await ws("reset", id, "--snapshot", "checkpoint");
      expect((await ws("file", "read", id, "notes/todo.txt", "--json")).json.content).toBe("snap me\n");
      const d = await ws("diff", id, "--json");
      expect(d.json.files.map((f: any) => [f.path, f.status])).toEqual([["notes/todo.txt", "added"]]);
      expect((await ws("reset", id, "--snapshot", "nope", "--json")).json.code).toBe("SNAPSHOT_NOT_FOUND");
      expect((await ws("snapshot", "delete", id, "checkpoint", "--json")).json.deleted).toBe(true);
      expect((await ws("snapshot", "delete", id, "baseline", "--json")).json.code).toBe("INVALID_INPUT");
    });

    test(`${label}: a patch with one bad hunk among good ones changes nothing`, async () => {
      const before = (await ws("diff", id, "--json")).json.patch;
      const bad = `--- a/add.sh
+++ b/add.sh
@@ -1 +1 @@
-echo $(( $1 - $2 ))
+echo fixed
--- a/docs/README
+++ b/docs/README
@@ -1 +1 @@
-this line is not there
+nope
`;
      const r = await ws("patch", "apply", id, "--patch", bad, "--json");
      expect(r.json.code).toBe("PATCH_REJECTED");
      expect(r.json.message).toContain("docs/README");
      expect(r.code).toBe(65);
      expect((await ws("diff", id, "--json")).json.patch).toBe(before);
    });

    test(`${label}: every entry point refuses paths outside /workspace`, async () => {
      const cases: string[][] = [
        ["file", "read", id, "../../etc/passwd", "--json"],
        ["file", "read", id, "/etc/passwd", "--json"],
        ["file", "write", id, "../escape.txt", "--text", "x", "--json"],
        ["file", "list", id, "/etc", "--json"],
        ["export", id, "/etc/passwd", "--output", join(tmp, "never"), "--json"],
        [
          "patch",
          "apply",
          id,
          "--patch",
          "--- /dev/null\n+++ b/../../escape.txt\n@@ -0,0 +1 @@\n+x\n",
          "--json",
        ],
      ];
      for (const args of cases) {
        const r = await ws(...args);
        expect({ args: args.join(" "), code: r.json?.code }).toEqual({
          args: args.join(" "),
          code: "PATH_OUTSIDE_WORKSPACE",
        });
      }
      expect(existsSync(join(tmp, "never"))).toBe(false);
      // a symlink inside the workspace pointing out is not a way through
      await ws("exec", id, "--", "ln", "-s", "/etc", "etc-link");
      expect((await ws("file", "read", id, "etc-link/passwd", "--json")).json.code).toBe(
        "PATH_OUTSIDE_WORKSPACE",
      );
      expect((await ws("file", "write", id, "etc-link/pwned", "--text", "x", "--json")).json.code).toBe(
        "PATH_OUTSIDE_WORKSPACE",
      );
      // archives: seed and sync refuse entries that climb out, and nothing lands outside
      const evil = await makeEvilTar(tmp);
      const s = await ws("sync", "push", id, evil, "--dest", "/workspace/sub", "--json");
      expect(s.json.code).toBe("PATH_OUTSIDE_WORKSPACE");
      const leaked = await ws(
        "exec",
        id,
        "--json",
        "--",
        "sh",
        "-c",
        "ls /workspace/escaped.txt /escaped.txt 2>/dev/null | wc -l",
      );
      expect(leaked.json.stdout.trim()).toBe("0");
      const seeded = await pyro(["workspace", "create", ...opts.createArgs, "--seed-path", evil, "--json"], {
        home: home(),
      });
      expect(seeded.json.code).toBe("PATH_OUTSIDE_WORKSPACE");
      // export never writes outside the given host path, and never overwrites
      const exists = join(tmp, "exists.txt");
      writeFileSync(exists, "keep");
      expect((await ws("export", id, "add.sh", "--output", exists, "--json")).json.code).toBe(
        "ALREADY_EXISTS",
      );
      expect(readFileSync(exists, "utf8")).toBe("keep");
      const outDir = mkdtempSync(join(tmp, "exp-"));
      symlinkSync("/tmp", join(outDir, "sneaky"));
      expect((await ws("export", id, "docs", "--output", join(outDir, "sneaky"), "--json")).json.code).toBe(
        "ALREADY_EXISTS",
      );
      expect(readdirSync(outDir)).toEqual(["sneaky"]);
    });

    test(`${label}: disk tools read a stopped workspace offline`, async () => {
      await ws("file", "write", id, "offline/seen.txt", "--text", "on disk\n");
      expect((await ws("disk", "list", id, "--json")).json.code).toBe("WORKSPACE_NOT_STOPPED");
      expect((await ws("stop", id, "--json")).json.state).toBe("stopped");
      const list = await ws("disk", "list", id, "/workspace/offline", "--json");
      expect(list.json.entries.map((e: any) => e.path)).toEqual(["/workspace/offline/seen.txt"]);
      const read = await ws("disk", "read", id, "offline/seen.txt", "--json");
      expect(read.json.content).toBe("on disk\n");
      expect((await ws("disk", "read", id, "../../etc/passwd", "--json")).json.code).toBe(
        "PATH_OUTSIDE_WORKSPACE",
      );
      if (opts.guest) {
        const img = join(tmp, "disk-export.ext4");
        const exp = await ws("disk", "export", id, "--output", img, "--json");
        expect(exp.code).toBe(0);
        expect(existsSync(img)).toBe(true);
        expect(Bun.spawnSync(["e2fsck", "-fn", img]).exitCode).toBe(0);
      }
      expect((await ws("start", id, "--json")).json.state).toBe("started");
      expect((await ws("file", "read", id, "offline/seen.txt", "--json")).json.content).toBe("on disk\n");
    });

    test(`${label}: sync push copies a directory and keeps modes and symlinks`, async () => {
      const src = join(tmp, "sync-src");
      mkdirSync(join(src, "bin"), { recursive: true });
      writeFileSync(join(src, "bin", "run.sh"), "#!/bin/sh\necho synced\n", { mode: 0o755 });
      symlinkSync("bin/run.sh", join(src, "run"));
      const r = await ws("sync", "push", id, src, "--dest", "/workspace/synced", "--json");
      expect(r.code).toBe(0);
      expect(r.json.files).toBe(1);
      const x = await ws(
        "exec",
        id,
        "--json",
        "--",
        "sh",
        "-c",
        "./synced/run && stat -c %a synced/bin/run.sh && readlink synced/run",
      );
      expect(x.json.stdout).toBe("synced\n755\nbin/run.sh\n");
    });
  });
}
