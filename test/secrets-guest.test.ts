/**
 * Secrets on a real guest (QEMU; TCG where KVM is unusable): the shared leak check of
 * test/secrets-cases.ts on one debian:12 workspace, with the guest-only checks (the tmpfs and
 * its modes, the raw disk export of the stopped workspace).
 */
import { guest, guestHome } from "./guest-env.ts";
import { pyro } from "./helpers.ts";
import { leakCheck } from "./secrets-cases.ts";

guest.describe("real guest: secrets", () => {
  guest.test(
    "real guest: exec, detached exec, a shell, a service, errors, history, logs, summary, diff, export, snapshot, disk export, reset, stop/start: values never leak",
    async () => {
      const home = await guestHome();
      await leakCheck((args) => pyro(args, { home }), home, { environment: "debian:12", guest: true });
    },
    1_800_000,
  );
});
