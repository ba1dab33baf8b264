import { beforeAll } from "bun:test";
import { guest, guestHome } from "./guest-env.ts";
import { snapshotSuite } from "./snapshot-cases.ts";

let home = "";
beforeAll(async () => {
  if (guest.ok) home = await guestHome();
}, 1_800_000);
guest.describe("real guest", () =>
  snapshotSuite("real guest", {
    home: () => home,
    createArgs: ["debian:12"],
    guest: true,
    timeoutMs: 300_000,
  }),
);
