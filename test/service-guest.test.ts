/**
 * Services on a real guest (QEMU; TCG where KVM is unusable): one debian:12-build workspace
 * (python3 for the http server; policy egress+published-ports so ports can be published)
 * for the shared cases of test/service-cases.ts, reset last. debian:12-build is built from
 * the shared build cache (scripts/setup.sh builds it when CI=true). The log-reading and
 * bad-input cases run in host compat only (test/service.test.ts): they exercise the
 * supervisor and the files, which are the same whatever the backend.
 */
import { afterAll, beforeAll, test } from "bun:test";
import { guest, guestHome } from "./guest-env.ts";
import { createWorkspaceOk, deleteWorkspaceLeavingNothing, pyro } from "./helpers.ts";
import * as cases from "./service-cases.ts";

const ENV = "debian:12-build";
let home = "";
let ws = "";
const run = (args: string[]) => pyro(args, { home });

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  const b = await run(["env", "build", ENV, "--json"]);
  if (b.code !== 0) throw new Error(`env build ${ENV} failed: ${b.stdout}${b.stderr}`);
  ws = await createWorkspaceOk(
    run,
    [ENV, "--name", "services-guest", "--network-policy", "egress+published-ports"],
    "guest",
  );
}, 1_800_000);
afterAll(() => deleteWorkspaceLeavingNothing(run, ws));

guest.describe("real guest: services", () => {
  test(
    "real guest: python3 -m http.server ready by an http probe, published, answers on 127.0.0.1 from the host; refused after stop; PORT_IN_USE",
    () => cases.publish(run, ws, 8000),
    300_000,
  );
  test(
    "real guest: ready by a file probe; status, list, workspace status and list count it; stop ends the group",
    () => cases.lifecycle(run, ws),
    300_000,
  );
  test(
    "real guest: a probe that never passes ends failed with its log tail in SERVICE_NOT_READY",
    () => cases.neverReady(run, ws),
    300_000,
  );
  test(
    "real guest: restart on-failure restarts a crashing service with backoff and counts",
    () => cases.restarts(run, ws),
    300_000,
  );
  test(
    "real guest: the summary lists services; reset ends them",
    () => cases.goneAfterReset(run, ws),
    600_000,
  );
});
