/**
 * Use case 5 of the contract (docs/use-cases/review-eval.md), as a chat client runs it:
 * `dist/pyro mcp serve --mode review-eval` driven by the official MCP client against a real
 * guest, step by step as the recipe's table: seed → snapshot → inspect in a shell read back
 * plain → evaluate → summary → export → reset to the snapshot. One workspace, one reset (a
 * second boot): about a minute under TCG.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { mcpSession } from "./helpers.ts";

/** The change under review: a sum script (with its fix) and the evaluation that scores it. */
const SUM = `#!/bin/sh
# sum of the arguments (the change under review)
t=0; for n in "$@"; do t=$((t + n)); done; echo "$t"
`;
const EVAL = `#!/bin/sh
# evaluation: run the cases, write results/report.txt, exit 1 on any failure
mkdir -p results
pass=0; fail=0
for c in "1 2:3" "10 -4:6" ":0" "5 5 5:15"; do
  got=$(sh sum.sh \${c%%:*}); want=\${c##*:}
  if [ "$got" = "$want" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: sum \${c%%:*} = $got, want $want" >> results/report.txt; fi
done
echo "passed $pass of $((pass+fail))" >> results/report.txt
cat results/report.txt
[ "$fail" = 0 ]
`;

let home = "";
let tmp = "";
let exportDir = "";
let session: Awaited<ReturnType<typeof mcpSession>> | null = null;
let id = "";
const call = (name: string, args: Record<string, unknown>) =>
  (session as NonNullable<typeof session>).call(name, args);

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "review-eval-"));
  const change = join(tmp, "change");
  mkdirSync(change);
  writeFileSync(join(change, "sum.sh"), SUM, { mode: 0o755 });
  writeFileSync(join(change, "eval.sh"), EVAL, { mode: 0o755 });
  exportDir = join(tmp, "review-out");
  mkdirSync(exportDir);
  session = await mcpSession(
    "pyro-review-eval",
    ["--mode", "review-eval", "--no-project-source", "--allow-host-path", change, "--export-dir", exportDir],
    { home, cwd: tmp },
  );
}, 1_800_000);

afterAll(async () => {
  if (id) await call("workspace_delete", { workspace_id: id }).catch(() => {});
  await session?.client.close();
});

guest.test(
  "real guest: review-eval from chat: snapshot, plain shell, evaluation, summary, export, reset",
  async () => {
    const { tools } = await (session as NonNullable<typeof session>).client.listTools();
    const names = tools.map((t) => t.name);
    for (const n of ["snapshot_create", "shell_open", "shell_read", "workspace_summary", "workspace_reset"])
      expect(names).toContain(n);

    // 1. seed
    const created = await call("workspace_create", {
      environment: "debian:12",
      name: "review-7",
      seed_path: join(tmp, "change"),
    });
    id = created.workspace_id;
    expect(created.execution_mode).toBe("guest");
    expect(created.workspace_seed.origin_kind).toBe("directory");

    // 2. checkpoint
    const snap = await call("snapshot_create", { workspace_id: id, name: "before-eval" });
    expect(snap).toMatchObject({ name: "before-eval", kind: "named" });

    // 3. inspect in a shell, read back plain: the file's text, no escape bytes; then a
    // reviewer's scratch edit made in the shell (the reset below must undo it).
    const shell = await call("shell_open", { workspace_id: id });
    await call("shell_write", {
      workspace_id: id,
      shell_id: shell.shell_id,
      input: "cat sum.sh; echo reviewed-by-shell > notes.txt; echo done-$((6*7))",
    });
    let screen = "";
    const deadline = Date.now() + 120_000;
    while (!screen.includes("done-42") && Date.now() < deadline) {
      const r = await call("shell_read", {
        workspace_id: id,
        shell_id: shell.shell_id,
        plain: true,
        wait_for_idle_ms: 500,
      });
      expect(r.plain).toBe(true);
      screen = r.output;
    }
    expect(screen).toContain("# sum of the arguments (the change under review)");
    expect(screen).toContain('t=0; for n in "$@"; do t=$((t + n)); done; echo "$t"');
    expect(screen.split("\n")).toContain("done-42");
    expect(screen).not.toContain("\u001b");
    expect(screen).not.toContain("\r");

    // 4. evaluate
    const ev = await call("workspace_exec", {
      workspace_id: id,
      command: "sh eval.sh",
      timeout_seconds: 120,
    });
    expect(ev.exit_code).toBe(0);
    expect(ev.stdout).toBe("passed 4 of 4\n");

    // 5. summary: the evaluation ran, results and the scratch note are changes, the checkpoint is listed
    const sum = await call("workspace_summary", { workspace_id: id });
    expect(sum.commands.count).toBeGreaterThanOrEqual(1);
    expect(sum.commands.failed).toBe(0);
    expect(sum.commands.recent.map((c: any) => c.command)).toContain("sh eval.sh");
    const changed = (sum.changes?.files ?? []).map((f: any) => f.path);
    expect(changed).toEqual(expect.arrayContaining(["results/report.txt", "notes.txt"]));
    expect(sum.snapshots.map((s: any) => s.name)).toContain("before-eval");

    // 6. export (relative output: the export dir)
    const ex = await call("workspace_export", {
      workspace_id: id,
      path: "results",
      output: "review-7-results",
    });
    expect(ex.artifact_type).toBe("directory");
    expect(readFileSync(join(exportDir, "review-7-results", "report.txt"), "utf8")).toBe("passed 4 of 4\n");

    // 7. reset to the checkpoint: the probe (file_list) sees results and notes before the reset
    // and neither after; shells and history are cleared; the seeded files are there.
    const listed = async () =>
      (await call("workspace_file_list", { workspace_id: id, path: "/workspace" })).entries.map(
        (e: any) => e.path,
      );
    expect(await listed()).toEqual(expect.arrayContaining(["/workspace/results", "/workspace/notes.txt"]));
    const reset = await call("workspace_reset", { workspace_id: id, snapshot: "before-eval" });
    expect(reset.restored_from).toBe("before-eval");
    expect((await listed()).sort()).toEqual(["/workspace/eval.sh", "/workspace/sum.sh"]);
    expect((await call("shell_list", { workspace_id: id })).count).toBe(0);
    const after = await call("workspace_summary", { workspace_id: id });
    expect(after.commands.count).toBe(0);
    // and the evaluation runs again from the same files, with the same result
    const again = await call("workspace_exec", { workspace_id: id, command: "sh eval.sh" });
    expect(again.stdout).toBe("passed 4 of 4\n");
  },
  900_000,
);
