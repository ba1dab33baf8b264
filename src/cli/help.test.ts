import { describe, expect, test } from "bun:test";
import { OPERATIONS } from "../operations/index.ts";
import { flagSpecs } from "./flags.ts";
import { formatHelp, wrap } from "./help.ts";

describe("help text", () => {
  test("wrap keeps lines within the width and indents continuation lines", () => {
    const text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu";
    const out = wrap(text, 20, 4).split("\n");
    expect(out.length).toBeGreaterThan(2);
    for (const l of out) expect(l.length).toBeLessThanOrEqual(20);
    for (const l of out.slice(1)) expect(l.startsWith("    ")).toBe(true);
    expect(out.join(" ").split(/\s+/).filter(Boolean).join(" ")).toBe(text);
  });

  test("a leaf: full path, every flag left-aligned, wrapped to the width, rest after --", () => {
    const cmd = {
      meta: { name: "exec", description: "Run a command." },
      args: {
        workspace_id: { type: "positional", description: "Workspace id." },
        cwd: { type: "string", description: "Working directory. ".repeat(12) },
        "max-output-bytes-with-a-long-name": { type: "string", description: "Long flag name." },
        json: { type: "boolean", description: "JSON." },
      },
    };
    const text = formatHelp(
      {
        path: ["pyro", "workspace", "exec"],
        cmd,
        rest: "COMMAND...",
        examples: [`pyro x -- ${"y".repeat(120)}`],
      },
      80,
    );
    const lines = text.split("\n");
    expect(lines[0]).toBe("pyro workspace exec: Run a command.");
    expect(text).toContain("  pyro workspace exec [OPTIONS] [WORKSPACE_ID] -- COMMAND...");
    expect(text).toContain("\n  --cwd=<cwd>  ");
    expect(text).toContain("\n  --json  ");
    // a name longer than the column: description on the next line
    expect(text).toMatch(
      /\n {2}--max-output-bytes-with-a-long-name=<max_output_bytes_with_a_long_name>\n {4,}Long flag name\./,
    );
    // only the example may exceed the width (examples are never wrapped)
    const wide = lines.filter((l) => l.length > 80);
    expect(wide).toEqual([`  pyro x -- ${"y".repeat(120)}`]);
  });

  test("a group lists its commands and says how to get their options", () => {
    const cmd = {
      meta: { name: "sync", description: "Sync commands: push." },
      subCommands: { push: { meta: { description: "Copy in." } } },
    };
    const text = formatHelp({ path: ["pyro", "workspace", "sync"], cmd }, 100);
    expect(text).toContain("  pyro workspace sync <command>");
    expect(text).toContain("COMMANDS\n  push  Copy in.");
    expect(text).toContain("Run `pyro workspace sync <command> --help`");
  });

  test("every operation's flags are in its help", () => {
    for (const op of OPERATIONS) {
      const args: Record<string, unknown> = {};
      for (const s of flagSpecs(op))
        args[s.flag] = { type: s.kind === "boolean" ? "boolean" : "string", description: s.description };
      const text = formatHelp(
        { path: ["pyro", ...op.cli], cmd: { meta: { description: op.summary }, args } },
        100,
      );
      for (const s of flagSpecs(op)) expect(text).toContain(`--${s.flag}`);
    }
  });
});
