/**
 * Detached exec on a real guest (QEMU; TCG where KVM is unusable): one workspace for the
 * shared cases of test/detached-cases.ts (seq 1 500000 outliving its killed client, read back
 * by offset, exit code kept, once per idempotency key; a command running at stop recorded).
 */
import { afterAll, beforeAll, describe, test } from "bun:test";
import { runningAtStopIsRecorded, seqSurvivesItsClient } from "./detached-cases.ts";
import { guestHome, SKIP_GUESTS } from "./guest-env.ts";
import { createWorkspaceOk, deleteWorkspaceLeavingNothing, pyro } from "./helpers.ts";

let home = "";
let ws = "";
const run = (args: string[]) => pyro(args, { home });
beforeAll(async () => {
  if (SKIP_GUESTS) return;
  home = await guestHome();
  ws = await createWorkspaceOk(run, ["debian:12", "--name", "detached-guest"], "guest");
}, 1_800_000);
afterAll(() => deleteWorkspaceLeavingNothing(run, ws));

describe.skipIf(SKIP_GUESTS)("real guest: detached exec", () => {
  test("real guest: seq 1 500000 detached survives kill -9 of its CLI, reads back whole by offset, exits 0, runs once per key", async () => {
    await seqSurvivesItsClient(home, ws);
  }, 600_000);

  test("real guest: a detached command still running at workspace stop ends with a recorded reason", async () => {
    await runningAtStopIsRecorded(home, ws);
  }, 300_000);
});
