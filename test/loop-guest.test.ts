import { beforeAll } from "bun:test";
import { guest, guestHome } from "./guest-env.ts";
import { loopSuite } from "./loop.ts";

let home = "";
beforeAll(async () => {
  if (guest.ok) home = await guestHome();
}, 1_800_000);
guest.describe("real guest", () =>
  loopSuite("real guest", { home: () => home, createArgs: ["debian:12"], guest: true }),
);
