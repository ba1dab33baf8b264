import { beforeAll, describe } from "bun:test";
import { guestHome, SKIP_GUESTS } from "./guest-env.ts";
import { loopSuite } from "./loop.ts";

let home = "";
beforeAll(async () => {
  if (!SKIP_GUESTS) home = await guestHome();
}, 1_800_000);
if (SKIP_GUESTS) describe.skip("real guest: repro-fix loop", () => {});
else loopSuite("real guest", { home: () => home, createArgs: ["debian:12"], guest: true });
