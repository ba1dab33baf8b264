/**
 * Shells in host compat (the CLI against a real supervisor and host agent, bash on a real
 * PTY): the shared cases of test/shell-cases.ts, one workspace for all of them.
 */
import { afterAll, beforeAll, describe, test } from "bun:test";
import { createWorkspaceOk, deleteWorkspaceLeavingNothing, ensureBuilt, freshHome, pyro } from "./helpers.ts";
import * as cases from "./shell-cases.ts";

let home = "";
let ws = "";
const run = (args: string[]) => pyro(args, { home, env: { PYRO_BACKEND: "host" } });

beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
  ws = await createWorkspaceOk(run, ["--allow-host-compat", "--name", "shells"]);
}, 180_000);
afterAll(() => deleteWorkspaceLeavingNothing(run, ws));

describe("shells (host compat)", () => {
  test(
    "a REPL-shaped exchange reads back plain: '>>> 1+1' and '2', no escape bytes",
    () => cases.replEcho(run, ws),
    120_000,
  );
  test(
    "\\r overwrites and a progress bar render as their final line",
    () => cases.carriageReturns(run, ws),
    120_000,
  );
  test(
    "top -b -n1, interactive top and a pager render as readable screens",
    () => cases.fullScreen(run, ws),
    180_000,
  );
  test("signal INT stops sleep and the prompt returns", () => cases.interrupt(run, ws), 120_000);
  test(
    "returned cursors reassemble the whole output exactly",
    () => cases.cursorsReassemble(run, ws),
    180_000,
  );
  test(
    "a shell keeps its state across CLI processes and survives a killed client",
    () => cases.survivesClients(run, ws, home),
    120_000,
  );
  test(
    "bad input: stable codes and exit codes, closed shells gone from list and status",
    () => cases.badInput(run, ws),
    120_000,
  );
  test(
    "resize: stty sees the new size, list shows it; bad input refused",
    () => cases.resize(run, ws),
    120_000,
  );
  test("shells are gone after reset", () => cases.goneAfterReset(run, ws), 180_000);
  test("shells are gone after stop and start", () => cases.goneAfterStop(run, ws), 180_000);
});
