/**
 * Published ports on a real guest (QEMU; TCG where KVM is unusable), network policy `off`:
 * forwards ride the agent channel and need no guest network device. The servers are
 * test/fixtures/forward-server.ts run by the guest's own agent binary as bun
 * (BUN_BE_BUN=1; debian:12 has no python3), started as a detached exec; forwards are opened
 * straight through the supervisor (`sup.forward.*`, the primitive services publish with).
 * The shared cases are test/forward-cases.ts; the last test kills the supervisor.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as cases from "./forward-cases.ts";
import { guest, guestHome } from "./guest-env.ts";
import { pyro, waitFor } from "./helpers.ts";

const HTTP = 8000;
const ECHO = 8001;
const DEAD = 8002;
let home = "";
let ws = "";
const run = (args: string[]) => pyro(args, { home });
const h = cases.supervisorHarness(() => ({ home, ws }));

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  const c = await run(["workspace", "create", "debian:12", "--name", "forwards-guest", "--json"]);
  expect(c.code).toBe(0);
  expect(c.json.execution_mode).toBe("guest");
  expect(c.json.network_policy).toBe("off");
  ws = c.json.workspace_id;
  const server = join(import.meta.dir, "fixtures", "forward-server.ts");
  expect(
    (await run(["workspace", "file", "write", ws, "forward-server.ts", "--text-file", server])).code,
  ).toBe(0);
  expect(readFileSync(server, "utf8")).toContain("listening");
  const s = await run([
    "workspace",
    "exec",
    ws,
    "--detach",
    "--json",
    "--",
    "env",
    "BUN_BE_BUN=1",
    "/usr/local/bin/pyro-agent",
    "/workspace/forward-server.ts",
    `${HTTP}`,
    `${ECHO}`,
  ]);
  expect(s.code).toBe(0);
  const execId = s.json.exec_id;
  const up = await waitFor(
    async () =>
      String((await run(["workspace", "exec-read", ws, execId, "--json"])).json?.data).includes("listening"),
    120_000,
  );
  if (!up)
    throw new Error(
      `the guest server did not start: ${(await run(["workspace", "exec-read", ws, execId, "--stream", "stderr", "--json"])).stdout}`,
    );
}, 1_800_000);
afterAll(async () => {
  if (ws) await run(["workspace", "delete", ws]);
});

guest.describe("real guest: published ports over the agent channel (policy off)", () => {
  guest.test(
    "real guest: published port: a greeting, 5 MiB byte for byte and 20 concurrent connections",
    () => cases.fetchesThrough(h, HTTP),
    600_000,
  );
  guest.test(
    "real guest: published port: 5 MiB echoed back, half-closes both ways",
    () => cases.echoesBothWays(h, ECHO),
    600_000,
  );
  guest.test(
    "real guest: published port: refuses after close; a guest port nobody listens on closes the connection",
    () => cases.closesAndRefuses(h, HTTP, DEAD),
    300_000,
  );
  guest.test(
    "real guest: published port: a taken host port is PORT_IN_USE",
    () => cases.portInUse(h, HTTP),
    300_000,
  );
  guest.test(
    "real guest: published port: kill -9 of the supervisor leaves no listener",
    () => cases.supervisorKillLeavesNoListener(h, HTTP, home, ws, run),
    300_000,
  );
});
