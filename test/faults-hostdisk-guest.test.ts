/**
 * The host disk filling up under a running guest's data disk (issue 15, part 2; the case
 * docs/reliability.md listed as not covered). QEMU's default `werror=enospc` pauses the VM
 * when a write to the sparse data disk fails on the host, so the agent goes silent. pyro must
 * say why instead of a bare AGENT_UNRESPONSIVE: the supervisor asks QMP `query-status`, finds
 * `io-error`, and the exec fails with "the VM is paused on a host I/O error (host disk
 * full?)", the VMM's run state and the free bytes of the filesystem holding the data disk;
 * `status` carries `vm_status: "io-error"`; once space is freed the VM continues by itself (QMP
 * `cont`: the failed writes are retried, the mark clears), and stop + start work too.
 *
 * The data disk is moved onto a small tmpfs this test mounts (root) and linked back into the
 * workspace directory, so only the disk's filesystem fills (the record stays writable, as on
 * a host whose PYRO_HOME and data disks are on different filesystems).
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, lstatSync, mkdtempSync, rmSync, statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { needs } from "./capabilities.ts";
import { guestHome } from "./guest-env.ts";
import { pyro, waitFor } from "./helpers.ts";

const gate = needs("guest", "root");
const NO_TEMPLATES = { PYRO_TEMPLATES: "off" };
const mounts: string[] = [];

function sh(argv: string[]): void {
  const r = Bun.spawnSync(argv);
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
}

gate.describe("real guest: host disk full under the data disk", () => {
  let home: string;
  beforeAll(async () => {
    home = await guestHome();
  }, 900_000);
  afterAll(() => {
    for (const m of mounts) Bun.spawnSync(["umount", "-l", m]);
  });

  gate.test(
    "real guest: the guest's writes fill the host disk: the exec says the VM is paused on a host I/O error, status says io-error, stop + start repair",
    async () => {
      const env = NO_TEMPLATES;
      const made = await pyro(["workspace", "create", "debian:12", "--json"], { home, env });
      expect(made.code).toBe(0);
      const id = made.json.workspace_id as string;
      try {
        const put = await pyro(
          ["workspace", "exec", id, "--json", "--", "sh", "-c", "echo kept > a.txt; sync"],
          {
            home,
            env,
          },
        );
        expect(put.json?.exit_code).toBe(0);
        expect((await pyro(["workspace", "stop", id, "--json"], { home, env })).code).toBe(0);

        // the data disk onto a tmpfs with 24 MiB to spare, linked back in place
        const disk = join(home, "workspaces", id, "disk.ext4");
        const used = statSync(disk).blocks * 512;
        const small = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "hostdisk-"));
        sh(["mount", "-t", "tmpfs", "-o", `size=${Math.ceil(used / 1048576) + 24}m`, "tmpfs", small]);
        mounts.push(small);
        sh(["cp", "--sparse=always", disk, join(small, "disk.ext4")]);
        rmSync(disk);
        symlinkSync(join(small, "disk.ext4"), disk);
        expect(lstatSync(disk).isSymbolicLink()).toBe(true);

        expect((await pyro(["workspace", "start", id, "--json"], { home, env })).json?.state).toBe("started");
        // the probe: the guest writes through to the small disk while there is room
        const fits = await pyro(
          [
            "workspace",
            "exec",
            id,
            "--json",
            "--",
            "sh",
            "-c",
            "dd if=/dev/zero of=small bs=1M count=4 conv=fsync 2>&1",
          ],
          { home, env },
        );
        expect(fits.json?.exit_code).toBe(0);

        // 64 MiB into a disk whose host filesystem has ~20 MiB left
        const t0 = Date.now();
        const full = await pyro(
          [
            "workspace",
            "exec",
            id,
            "--timeout-seconds",
            "20",
            "--json",
            "--",
            "sh",
            "-c",
            "dd if=/dev/zero of=big bs=1M count=64 conv=fsync 2>&1",
          ],
          { home, env },
        );
        console.log(`host disk full: exec ended after ${Date.now() - t0} ms: ${full.stdout.slice(0, 600)}`);
        expect(full.code).not.toBe(0);
        expect(full.json?.code).toBe("IO_ERROR");
        expect(full.json?.message).toBe("the VM is paused on a host I/O error (host disk full?)");
        expect(full.json?.details?.vm_status).toBe("io-error");
        expect(typeof full.json?.details?.host_free_bytes).toBe("number");
        expect(full.json?.details?.host_free_bytes).toBeLessThan(1 << 20);

        // later calls fail at once with the same story; status says why
        const again = await pyro(["workspace", "exec", id, "--json", "--", "true"], { home, env });
        expect(again.json?.code).toBe("IO_ERROR");
        const st = await pyro(["workspace", "status", id, "--json"], { home, env });
        expect(st.json?.state).toBe("started");
        expect(st.json?.vm_status).toBe("io-error");
        expect(st.json?.agent_unresponsive_since).toBeTruthy();

        // room again: the VM continues by itself (its failed writes retried), the mark clears
        sh(["mount", "-o", "remount,size=512m", small]);
        const resumed = await waitFor(
          async () =>
            (await pyro(["workspace", "status", id, "--json"], { home, env })).json
              ?.agent_unresponsive_since === null,
          90_000,
        );
        expect(resumed).toBe(true);
        const st1 = await pyro(["workspace", "status", id, "--json"], { home, env });
        expect(st1.json?.vm_status).toBeNull();
        const after = await pyro(
          ["workspace", "exec", id, "--json", "--", "sh", "-c", "cat a.txt; sync; ls big"],
          {
            home,
            env,
          },
        );
        expect(after.json?.stdout).toBe("kept\nbig\n");

        // and stop + start repair it too
        const stop = await pyro(["workspace", "stop", id, "--json"], { home, env });
        expect(stop.code).toBe(0);
        const st2 = await pyro(["workspace", "status", id, "--json"], { home, env });
        expect(st2.json?.state).toBe("stopped");
        expect(st2.json?.vm_status).toBeNull();
        expect((await pyro(["workspace", "start", id, "--json"], { home, env })).json?.state).toBe("started");
        const cat = await pyro(["workspace", "exec", id, "--json", "--", "cat", "a.txt"], { home, env });
        expect(cat.json?.stdout).toBe("kept\n");
        const write = await pyro(
          [
            "workspace",
            "exec",
            id,
            "--json",
            "--",
            "sh",
            "-c",
            "rm -f big; echo ok > c.txt; sync; cat c.txt",
          ],
          { home, env },
        );
        expect(write.json?.stdout).toBe("ok\n");
      } finally {
        await pyro(["workspace", "delete", id, "--json"], { home, env });
      }
      expect(existsSync(join(home, "workspaces", id))).toBe(false);
    },
    600_000,
  );
});
