import { beforeAll } from "bun:test";
import { ensureBuilt, freshHome } from "./helpers.ts";
import { snapshotSuite } from "./snapshot-cases.ts";

let home = "";
beforeAll(async () => {
  await ensureBuilt();
  home = freshHome();
});
snapshotSuite("host compat", {
  home: () => home,
  createArgs: ["--allow-host-compat"],
  guest: false,
  timeoutMs: 60_000,
});
