/**
 * Faults from below on a real guest (issue 15, part 2), one workspace in sequence:
 * - the guest's /workspace disk full (ENOSPC): writes fail with a clear error, the agent
 *   stays alive, and freeing space makes writes work again;
 * - a kernel panic (`echo c > /proc/sysrq-trigger`; the kernel has CONFIG_MAGIC_SYSRQ): the
 *   call fails with an error instead of hanging, the workspace is reported stopped with a
 *   reason, and start brings it back with /workspace intact;
 * - the guest agent killed: the same (the agent is what tini runs; the guest goes down with it).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { processesMatching, pyro } from "./helpers.ts";

guest.describe("real guest: faults from below", () => {
  let home: string;
  let id = "";
  const run = (args: string[]) => pyro(args, { home });
  const exec = (timeout: number, ...argv: string[]) =>
    run(["workspace", "exec", id, "--timeout-seconds", String(timeout), "--json", "--", ...argv]);
  const status = async () => (await run(["workspace", "status", id, "--json"])).json;

  let big = "";
  beforeAll(async () => {
    home = await guestHome();
    big = join(home, "big.txt");
    writeFileSync(big, "x".repeat(1 << 20));
    const r = await run(["workspace", "create", "debian:12", "--json"]);
    expect(r.code).toBe(0);
    id = r.json.workspace_id;
  }, 900_000);
  afterAll(async () => {
    if (id) await run(["workspace", "delete", id, "--json"]);
    expect(processesMatching(id || "ws_none")).toEqual([]);
  });

  test("real guest: /workspace full (ENOSPC): clear error, agent alive, freeing space recovers", async () => {
    expect((await run(["workspace", "file", "write", id, "keep.txt", "--text", "kept", "--json"])).code).toBe(
      0,
    );
    // fill the disk: fallocate takes the free blocks without writing them
    const fill = await exec(
      60,
      "sh",
      "-c",
      "fallocate -l $(( $(df -B1 --output=avail /workspace | tail -1) )) /workspace/fill; df -B1 --output=avail /workspace | tail -1",
    );
    expect(fill.json.exit_code).toBe(0);
    const write = await run(["workspace", "file", "write", id, "b.txt", "--text-file", big, "--json"]);
    expect(write.code).not.toBe(0);
    expect(write.json.code).not.toBe("INTERNAL");
    expect(`${write.json.message}`).toMatch(/space|ENOSPC/i);
    const sh = await exec(30, "sh", "-c", "head -c 1048576 /dev/zero > /workspace/c.bin; echo rc=$?");
    expect(sh.json.stdout).toContain("rc=1");
    expect(sh.json.stderr).toMatch(/No space left on device/);
    // the agent is alive and the old file is intact
    expect((await exec(30, "cat", "keep.txt")).json.stdout).toBe("kept");
    expect((await exec(30, "rm", "-f", "/workspace/fill", "/workspace/c.bin")).json.exit_code).toBe(0);
    expect((await run(["workspace", "file", "write", id, "b.txt", "--text", "after", "--json"])).code).toBe(
      0,
    );
    expect((await status()).state).toBe("started");
  }, 300_000);

  test("real guest: a kernel panic is an error, not a hang; status says stopped; start repairs", async () => {
    const panic = await exec(60, "sh", "-c", "sync; echo c > /proc/sysrq-trigger; sleep 60");
    expect(panic.code).not.toBe(0);
    expect(typeof panic.json.code).toBe("string");
    // an error object, not the command's timeout result: the machine died under it
    const st = await status();
    expect(st.state).toBe("stopped");
    expect(st.stop_reason).toBeTruthy();
    expect((await run(["workspace", "start", id, "--json"])).json.state).toBe("started");
    expect((await exec(30, "cat", "keep.txt")).json.stdout).toBe("kept");
  }, 600_000);

  test("real guest: the agent killed in the guest is an error; status says stopped; start repairs", async () => {
    const kill = await exec(60, "sh", "-c", "kill -9 $(pidof pyro-agent); sleep 60");
    expect(kill.code).not.toBe(0);
    expect(typeof kill.json.code).toBe("string");
    const st = await status();
    expect(st.state).toBe("stopped");
    expect(st.stop_reason).toBeTruthy();
    expect((await run(["workspace", "start", id, "--json"])).json.state).toBe("started");
    expect((await exec(30, "cat", "keep.txt")).json.stdout).toBe("kept");
  }, 600_000);
});
