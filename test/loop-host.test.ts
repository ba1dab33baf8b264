import { beforeAll } from "bun:test";
import { ensureBuilt, freshHome } from "./helpers.ts";
import { loopSuite } from "./loop.ts";

let home = "";
beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
});
loopSuite("host compat", { home: () => home, createArgs: ["--allow-host-compat"], guest: false });
