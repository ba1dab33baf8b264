/**
 * Shells on a real guest (QEMU; TCG where KVM is unusable): one debian:12 workspace for the
 * shared cases of test/shell-cases.ts. debian:12 has no python3 and no less, so the REPL case
 * is a bash `read -p '>>> '` loop and the pager is `more` (see shell-cases.ts).
 */
import { afterAll, beforeAll, describe, test } from "bun:test";
import { guestHome, SKIP_GUESTS } from "./guest-env.ts";
import { createWorkspaceOk, deleteWorkspaceLeavingNothing, pyro } from "./helpers.ts";
import * as cases from "./shell-cases.ts";

let home = "";
let ws = "";
const run = (args: string[]) => pyro(args, { home });

beforeAll(async () => {
  if (SKIP_GUESTS) return;
  home = await guestHome();
  ws = await createWorkspaceOk(run, ["debian:12", "--name", "shells-guest"], "guest");
}, 1_800_000);
afterAll(() => deleteWorkspaceLeavingNothing(run, ws));

describe.skipIf(SKIP_GUESTS)("real guest: shells", () => {
  test(
    "real guest: a REPL-shaped exchange reads back plain: '>>> 1+1' and '2', no escape bytes",
    () => cases.replEcho(run, ws),
    300_000,
  );
  test(
    "real guest: \\r overwrites and a progress bar render as their final line",
    () => cases.carriageReturns(run, ws),
    300_000,
  );
  test(
    "real guest: top -b -n1, interactive top and more render as readable screens",
    () => cases.fullScreen(run, ws),
    600_000,
  );
  test(
    "real guest: signal INT stops sleep 1001 and the prompt returns",
    () => cases.interrupt(run, ws),
    300_000,
  );
  test(
    "real guest: returned cursors reassemble the whole output exactly",
    () => cases.cursorsReassemble(run, ws),
    600_000,
  );
  test(
    "real guest: a shell keeps its state across CLI processes and survives a killed client",
    () => cases.survivesClients(run, ws, home),
    300_000,
  );
  test(
    "real guest: bad input gives stable codes; closed shells leave list and status",
    () => cases.badInput(run, ws),
    300_000,
  );
  test(
    "real guest: resize: stty sees the new size, list shows it; bad input refused",
    () => cases.resize(run, ws),
    300_000,
  );
  test("real guest: shells are gone after reset", () => cases.goneAfterReset(run, ws), 600_000);
  test("real guest: shells are gone after stop and start", () => cases.goneAfterStop(run, ws), 600_000);
});
