/**
 * docs/benchmarks.md: a header about the machine and the run, an "at a glance" list built
 * from every section's summary, then one block per section between markers, so
 * `--only NAME` replaces its own block and keeps the others.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const begin = (id: string) => `<!-- bench:${id} -->`;
const end = (id: string) => `<!-- /bench:${id} -->`;

export function sectionBlock(
  id: string,
  title: string,
  stamp: string,
  body: string,
  summary: string[],
): string {
  return [
    begin(id),
    `## ${title}`,
    "",
    `_${stamp}_`,
    "",
    body.trim(),
    // base64: an HTML comment may not contain "--", which CLI text is full of.
    ...summary.map((s) => `<!-- summary: ${Buffer.from(s).toString("base64")} -->`),
    end(id),
  ].join("\n");
}

/** Blocks of an existing file by id (empty when the file has none). */
export function readBlocks(path: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(path)) return out;
  const text = readFileSync(path, "utf8");
  const re = /<!-- bench:([a-z0-9-]+) -->[\s\S]*?<!-- \/bench:\1 -->/g;
  for (const m of text.matchAll(re)) out.set(m[1]!, m[0]);
  return out;
}

function summaries(block: string): string[] {
  return [...block.matchAll(/<!-- summary: (\S*) -->/g)].map((m) => Buffer.from(m[1]!, "base64").toString());
}

export function writeReport(
  path: string,
  header: string,
  order: { id: string }[],
  fresh: Map<string, string>,
): void {
  const old = readBlocks(path);
  const blocks: string[] = [];
  for (const { id } of order) {
    const block = fresh.get(id) ?? old.get(id);
    if (block) blocks.push(block);
  }
  const glance = ["## At a glance", "", ...blocks.flatMap(summaries).map((s) => `- ${s}`)].join("\n");
  writeFileSync(path, `${[header.trim(), glance, ...blocks].join("\n\n")}\n`);
}
