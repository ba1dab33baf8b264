/**
 * Services in host compat (the CLI against a real supervisor and host agent): the shared cases
 * of test/service-cases.ts, one workspace for all of them (reset last).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  createWorkspaceOk,
  deleteWorkspaceLeavingNothing,
  ensureBuilt,
  freshHome,
  processesMatching,
  pyro,
  waitFor,
} from "./helpers.ts";
import * as cases from "./service-cases.ts";

const SECRET = `svc-secret-${process.pid}-value`;
let home = "";
let ws = "";
const run = (args: string[]) => pyro(args, { home, env: { PYRO_BACKEND: "host" } });

beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
  ws = await createWorkspaceOk(run, [
    "--allow-host-compat",
    "--name",
    "services",
    "--network-policy",
    "egress+published-ports",
    "--secret",
    `SVC_TOKEN=${SECRET}`,
  ]);
}, 180_000);
afterAll(() => deleteWorkspaceLeavingNothing(run, ws));

describe("services (host compat)", () => {
  test(
    "ready by a file probe; status, list, workspace status and list count it; stop",
    () => cases.lifecycle(run, ws),
    120_000,
  );
  test("logs: --tail-lines, and reads by offset reassemble stdout", () => cases.logs(run, ws), 120_000);
  test(
    "a probe that never passes: SERVICE_NOT_READY with the log tail, failed, process gone",
    () => cases.neverReady(run, ws),
    120_000,
  );
  test(
    "restart on-failure restarts with backoff and counts; stop cancels it",
    () => cases.restarts(run, ws),
    120_000,
  );
  test(
    "logs rotate at 8 MiB: a read from 0 says truncated, the tail is the end",
    () => cases.rotation(run, ws, home),
    120_000,
  );
  test("bad input: stable codes, nothing half-made", () => cases.badInput(run, ws), 120_000);
  test(
    "secret_env reaches the service; its logs are redacted",
    () => cases.secretEnv(run, ws, SECRET),
    120_000,
  );
  test(
    "published: ready by http, answers on 127.0.0.1 from the host, refuses after stop; PORT_IN_USE",
    () => cases.publish(run, ws, 20000 + (process.pid % 20000)),
    120_000,
  );
  test("--publish under policy off: PUBLISH_NOT_ALLOWED", async () => {
    const c = await run(["workspace", "create", "--allow-host-compat", "--name", "services-off", "--json"]);
    expect(c.code).toBe(0);
    try {
      await cases.publishRefused(run, c.json.workspace_id);
    } finally {
      await run(["workspace", "delete", c.json.workspace_id]);
    }
  }, 120_000);
  test("the summary lists services; reset ends them", () => cases.goneAfterReset(run, ws), 180_000);
  test("kill -9 of the supervisor: no listener, no service process; the service reads stopped", async () => {
    const port = 20000 + ((process.pid + 7) % 20000);
    await cases.supervisorKilled(run, ws, home, port);
    await waitFor(() => processesMatching(`http.server ${port} --bind`).length === 0, 10_000);
    expect(processesMatching(`http.server ${port} --bind`)).toEqual([]);
  }, 120_000);
});
