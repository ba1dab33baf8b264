import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { renderMcpDoc, renderReference } from "../scripts/gen-docs.ts";
import { REPO } from "./helpers.ts";

test("docs/reference.md matches the operations and error tables (run `bun scripts/gen-docs.ts`)", () => {
  expect(readFileSync(join(REPO, "docs", "reference.md"), "utf8")).toBe(renderReference());
});

test("docs/mcp.md lists every profile's tools from the operations table (run `bun scripts/gen-docs.ts`)", () => {
  const current = readFileSync(join(REPO, "docs", "mcp.md"), "utf8");
  expect(current).toBe(renderMcpDoc(current));
});

test("docs/architecture.md shows the fixture operation exactly as the tests run it", () => {
  const doc = readFileSync(join(REPO, "docs", "architecture.md"), "utf8");
  const block = doc.match(/<!-- example:echo-op -->\n```ts\n([\s\S]*?)```\n<!-- end:echo-op -->/)?.[1];
  expect(block).toBe(readFileSync(join(REPO, "test", "fixtures", "echo-op.ts"), "utf8"));
});

test("README leads with the two commands and .ci/run calls the README's test command", () => {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```(?:sh|bash)?\n([\s\S]*?)```/g)].map((m) => m[1]?.trim());
  expect(blocks[0]).toBe("bash scripts/setup.sh");
  expect(blocks[1]).toBe("npm test");
  expect(readFileSync(join(REPO, ".ci", "run"), "utf8")).toContain("npm test");
});
