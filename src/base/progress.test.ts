import { expect, test } from "bun:test";
import { renderBar, terminalProgress } from "./progress.ts";

function sink(isTTY: boolean) {
  const out: string[] = [];
  let t = 0;
  const p = terminalProgress({ isTTY, write: (s: string) => out.push(s) }, () => t);
  return { out, p, tick: (ms: number) => (t += ms) };
}
const MiB = 1024 * 1024;
const ev = (done: number, total = 100 * MiB) => ({
  step: "rootfs: downloaded",
  done,
  total,
  unit: "bytes" as const,
});

test("off a terminal: plain lines; a step with a total prints its start, each quarter and its end", () => {
  const { out, p } = sink(false);
  p("resolving localhost:5000/x:1");
  for (let mib = 0; mib <= 100; mib += 5) p(`rootfs: downloaded ${mib} MiB`, ev(mib * MiB));
  p("installed");
  expect(out.join("")).not.toContain("\r");
  expect(out.every((l) => l.endsWith("\n"))).toBe(true);
  expect(out).toEqual([
    "resolving localhost:5000/x:1\n",
    "rootfs: downloaded 0 MiB\n",
    "rootfs: downloaded 25 MiB\n",
    "rootfs: downloaded 50 MiB\n",
    "rootfs: downloaded 75 MiB\n",
    "rootfs: downloaded 100 MiB\n",
    "installed\n",
  ]);
});

test("on a terminal: one bar redrawn in place with bytes, percent and ETA, closed by a newline", () => {
  const { out, p, tick } = sink(true);
  p("start");
  p("x", ev(0));
  tick(1000);
  p("x", ev(25 * MiB));
  tick(1000);
  p("x", ev(50 * MiB));
  const drawn = out.at(-1) as string;
  expect(drawn.startsWith("\r")).toBe(true);
  expect(drawn).toContain("rootfs: downloaded [############------------]  50%  50.0 MiB / 100.0 MiB  ETA 2s");
  p("x", ev(100 * MiB));
  expect(out.at(-1)).toBe("\n");
  expect(out.at(-2)).toContain("100%");
  expect(out.at(-2)).toContain("done");
  // a plain line in the middle of a bar ends the bar first
  p("x", ev(10 * MiB));
  p("a message");
  expect(out.slice(-2)).toEqual(["\n", "a message\n"]);
});

test("steps render as n/total", () => {
  expect(renderBar({ step: "layers", done: 1, total: 4, unit: "steps" }, 2000)).toBe(
    "layers [######------------------]  25%  1/4  ETA 6s",
  );
});

test("off a terminal, step counts print every step", () => {
  const { out, p } = sink(false);
  for (let i = 0; i < 5; i++)
    p(`step ${i + 1}/5`, { step: "recipe steps", done: i, total: 5, unit: "steps" });
  expect(out).toEqual(["step 1/5\n", "step 2/5\n", "step 3/5\n", "step 4/5\n", "step 5/5\n"]);
});
