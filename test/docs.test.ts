import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { renderReference } from "../scripts/gen-docs.ts";
import { REPO } from "./helpers.ts";

test("docs/reference.md matches the operations and error tables (run `bun scripts/gen-docs.ts`)", () => {
  expect(readFileSync(join(REPO, "docs", "reference.md"), "utf8")).toBe(renderReference());
});

test("README leads with the two commands and .ci/run calls the README's test command", () => {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```(?:sh|bash)?\n([\s\S]*?)```/g)].map((m) => m[1]?.trim());
  expect(blocks[0]).toBe("bash scripts/setup.sh");
  expect(blocks[1]).toBe("npm test");
  expect(readFileSync(join(REPO, ".ci", "run"), "utf8")).toContain("npm test");
});
