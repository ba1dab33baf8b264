/**
 * Detached exec on a real guest (QEMU; TCG where KVM is unusable): one workspace for the
 * shared cases of test/detached-cases.ts (seq 1 500000 outliving its killed client, read back
 * by offset, exit code kept, once per idempotency key; a command running at stop recorded).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { runningAtStopIsRecorded, seqSurvivesItsClient } from "./detached-cases.ts";
import { guestHome, SKIP_GUESTS } from "./guest-env.ts";
import { processesMatching, pyro } from "./helpers.ts";

let home = "";
let ws = "";
beforeAll(async () => {
  if (SKIP_GUESTS) return;
  home = await guestHome();
  const c = await pyro(["workspace", "create", "debian:12", "--name", "detached-guest", "--json"], { home });
  expect(c.code).toBe(0);
  expect(c.json.execution_mode).toBe("guest");
  ws = c.json.workspace_id;
}, 1_800_000);
afterAll(async () => {
  if (!ws) return;
  await pyro(["workspace", "delete", ws], { home });
  expect(processesMatching(ws)).toEqual([]);
});

describe.skipIf(SKIP_GUESTS)("real guest: detached exec", () => {
  test("real guest: seq 1 500000 detached survives kill -9 of its CLI, reads back whole by offset, exits 0, runs once per key", async () => {
    await seqSurvivesItsClient(home, ws);
  }, 600_000);

  test("real guest: a detached command still running at workspace stop ends with a recorded reason", async () => {
    await runningAtStopIsRecorded(home, ws);
  }, 300_000);
});
