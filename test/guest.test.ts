/** Real microVMs (QEMU; TCG where KVM is unusable). Names start with "real guest" so the runner counts them. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  closeSync,
  cpSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { guest, guestHome, loopbackProbe, probeReached } from "./guest-env.ts";
import { processesMatching, pyro } from "./helpers.ts";

let home = "";
beforeAll(async () => {
  if (guest.ok) home = await guestHome();
}, 1_800_000); // may build the kernel on a fresh machine

function noLeaks(needle: string) {
  expect(processesMatching(needle).filter((p) => p.includes("qemu") || p.includes("__supervise"))).toEqual(
    [],
  );
}

guest.describe("real guest: one-shot run", () => {
  test("real guest: run debian:12 -- git --version in a microVM with the -pyro kernel", async () => {
    const r = await pyro(["run", "--json", "debian:12", "--", "sh", "-c", "git --version; uname -r"], {
      home,
    });
    expect(r.code).toBe(0);
    expect(r.json.stdout).toMatch(/^git version \d/);
    expect(r.json.stdout).toContain("-pyro");
    expect(r.json.execution_mode).toBe("guest");
    expect(r.json.backend).toBe("qemu");
    expect(["kvm", "tcg"]).toContain(r.json.accelerator);
    expect(readdirSync(join(home, "runs"))).toEqual([]);
    noLeaks(join(home, "runs"));
  });

  test("real guest: exit codes, stderr and timeouts cross the VM boundary", async () => {
    const r = await pyro(
      [
        "run",
        "--json",
        "--timeout-seconds",
        "2",
        "debian:12",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; sleep 30 & sleep 30",
      ],
      { home },
    );
    expect(r.code).toBe(124);
    expect(r.json.timed_out).toBe(true);
    expect(r.json.stdout).toBe("out\n");
    expect(r.json.stderr).toBe("err\n");
  });

  test("real guest: --network gives egress, and without it the same probe fails", async () => {
    const probe = loopbackProbe();
    try {
      // The probe first proves it works (networking on), then the same line must fail (off).
      const on = await pyro(
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
          `${probe.script}; cat /etc/resolv.conf`,
        ],
        { home },
      );
      expect(probeReached(on, probe.reply)).toBe(true);
      expect(on.json.stdout).toContain("nameserver 10.0.2.3");
      const off = await pyro(
        ["run", "--json", "--timeout-seconds", "10", "debian:12", "--", "bash", "-c", probe.script],
        { home },
      );
      expect(probeReached(off, probe.reply)).toBe(false);
      expect(off.json.exit_code).toBe(1);
      expect(off.json.stderr).toMatch(/Network is unreachable/);
    } finally {
      probe.stop();
    }
  });
});

guest.describe("real guest: workspace", () => {
  let id = "";
  afterAll(async () => {
    if (id) await pyro(["workspace", "delete", id], { home });
  });

  test("real guest: create, exec, read a file back, stop/start keeps /workspace, delete leaves nothing", async () => {
    const c = await pyro(["workspace", "create", "debian:12", "--name", "guest-ws", "--json"], { home });
    expect(c.code).toBe(0);
    id = c.json.workspace_id;
    expect(c.json.backend).toBe("qemu");
    expect(c.json.execution_mode).toBe("guest");
    // create copies nothing large: the writable disk is sparse
    const disk = join(home, "workspaces", id, "disk.ext4");
    expect(statSync(disk).blocks * 512).toBeLessThanOrEqual(5 * 1024 * 1024);

    const w = await pyro(
      [
        "workspace",
        "exec",
        "guest-ws",
        "--json",
        "--",
        "sh",
        "-c",
        "printf 'line1\\nline2\\n' > /workspace/notes.txt && pwd",
      ],
      { home },
    );
    expect(w.json.exit_code).toBe(0);
    expect(w.json.stdout).toBe("/workspace\n");
    const r = await pyro(["workspace", "exec", "guest-ws", "--json", "--", "cat", "notes.txt"], { home });
    expect(r.json.stdout).toBe("line1\nline2\n");
    const ro = await pyro(
      ["workspace", "exec", "guest-ws", "--json", "--", "sh", "-c", "touch /usr/x && echo writable-overlay"],
      { home },
    );
    expect(ro.json.stdout).toBe("writable-overlay\n");

    const concurrent = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        pyro(["workspace", "exec", id, "--json", "--", "sh", "-c", `echo g${i}`], { home }),
      ),
    );
    concurrent.forEach((x, i) => {
      expect(x.json.stdout).toBe(`g${i}\n`);
    });

    expect((await pyro(["workspace", "stop", id, "--json"], { home })).json.state).toBe("stopped");
    noLeaks(id);
    expect((await pyro(["workspace", "start", id, "--json"], { home })).json.state).toBe("started");
    const after = await pyro(
      [
        "workspace",
        "exec",
        id,
        "--json",
        "--",
        "sh",
        "-c",
        "cat /workspace/notes.txt; test -e /usr/x && echo kept",
      ],
      { home },
    );
    expect(after.json.stdout).toBe("line1\nline2\nkept\n");

    const logs = await pyro(["workspace", "logs", id, "--json"], { home });
    expect(logs.json.count).toBeGreaterThanOrEqual(1);

    const d = await pyro(["workspace", "delete", id, "--json"], { home });
    expect(d.json.deleted).toBe(true);
    noLeaks(id);
    expect(existsSync(join(home, "workspaces", id))).toBe(false);
    id = "";
  });
});

guest.describe("real guest: failures are clear and leak nothing", () => {
  /** A copy of the installed environment in its own home, to break without harming others. */
  function cloneHome(): string {
    const h = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "broken-"));
    cpSync(join(home, "environments"), join(h, "environments"), { recursive: true });
    return h;
  }
  const envDir = (h: string) => join(h, "environments", "debian-12", "1");

  test("real guest: one flipped byte in the rootfs → ENVIRONMENT_CORRUPT, never booted", async () => {
    const h = cloneHome();
    const fd = openSync(join(envDir(h), "rootfs.ext4"), "r+");
    writeSync(fd, Buffer.from([0x5a]), 0, 1, 2048);
    closeSync(fd);
    const r = await pyro(["run", "--json", "debian:12", "--", "true"], {
      home: h,
      env: { PYRO_AUTO_BUILD: "0" },
    });
    expect(r.json.code).toBe("ENVIRONMENT_CORRUPT");
    expect(r.json.hint).toContain("pyro env build debian:12 --force");
    expect(processesMatching(h)).toEqual([]);
  });

  test("real guest: missing kernel → ENVIRONMENT_CORRUPT", async () => {
    const h = cloneHome();
    rmSync(join(envDir(h), "vmlinux"));
    const r = await pyro(["workspace", "create", "--json"], { home: h, env: { PYRO_AUTO_BUILD: "0" } });
    expect(r.json.code).toBe("ENVIRONMENT_CORRUPT");
    expect(existsSync(join(h, "workspaces")) ? readdirSync(join(h, "workspaces")) : []).toEqual([]);
  });

  test("real guest: a guest that does not answer in time → GUEST_BOOT_TIMEOUT with the console tail", async () => {
    const r = await pyro(["run", "--json", "debian:12", "--", "true"], {
      home,
      env: { PYRO_BOOT_TIMEOUT_MS: "300" },
    });
    expect(r.json.code).toBe("GUEST_BOOT_TIMEOUT");
    expect(typeof r.json.details?.console_tail).toBe("string");
    expect(readdirSync(join(home, "runs"))).toEqual([]);
    noLeaks(join(home, "runs"));
  });

  test("real guest: workspace create that cannot boot leaves no record, disk or VMM", async () => {
    const r = await pyro(["workspace", "create", "--json"], { home, env: { PYRO_BOOT_TIMEOUT_MS: "300" } });
    expect(r.json.code).toBe("GUEST_BOOT_TIMEOUT");
    const ws = join(home, "workspaces");
    expect(existsSync(ws) ? readdirSync(ws) : []).toEqual([]);
  });

  test("real guest: the VMM killed mid-boot → VMM_FAILED, nothing left", async () => {
    const run = pyro(["run", "--json", "debian:12", "--", "true"], { home });
    let killed = false;
    // up to 30 s: the first run in this home makes the VM template first (another QEMU, not under runs/)
    for (let i = 0; i < 1200 && !killed; i++) {
      const q = processesMatching("qemu-system-x86_64").filter((p) => p.includes(join(home, "runs")));
      if (q.length) {
        process.kill(Number(q[0]?.split(" ")[0]), "SIGKILL");
        killed = true;
      } else await Bun.sleep(25);
    }
    expect(killed).toBe(true);
    const r = await run;
    expect(["VMM_FAILED", "GUEST_UNREACHABLE"]).toContain(r.json.code);
    expect(readdirSync(join(home, "runs"))).toEqual([]);
  });

  test("real guest: firecracker forced without usable KVM or binary → a clear error", async () => {
    const r = await pyro(["run", "--json", "debian:12", "--", "true"], {
      home,
      env: { PYRO_BACKEND: "firecracker" },
    });
    expect(["VMM_NOT_FOUND", "KVM_UNAVAILABLE"]).toContain(r.json.code);
    expect(r.code).toBe(69);
  });
});

describe("the network probe cannot pass by accident", () => {
  test("a run that never reached a guest is an error, not 'network off' (the old exit_code !== 0 check passed it)", () => {
    const never = { json: { code: "GUEST_BOOT_TIMEOUT", message: "the guest did not boot" } };
    expect(never.json).not.toHaveProperty("exit_code", 0); // what the old assertion accepted
    expect(() => probeReached(never, "x")).toThrow(/did not run in a guest/);
    const hostCompat = {
      json: { execution_mode: "host_compat", exit_code: 1, timed_out: false, stdout: "probe-ran\n" },
    };
    expect(() => probeReached(hostCompat, "x")).toThrow(/did not run in a guest/);
    const noLine = { json: { execution_mode: "guest", exit_code: 127, timed_out: false, stdout: "" } };
    expect(() => probeReached(noLine, "x")).toThrow(/did not run/);
    const off = { json: { execution_mode: "guest", exit_code: 1, timed_out: false, stdout: "probe-ran\n" } };
    expect(probeReached(off, "x")).toBe(false);
  });
});
