/**
 * §2 Exec round trip on a host-compat workspace: raw Bun.spawn vs the warm SDK vs the CLI,
 * plus a step-by-step breakdown of the SDK's path (record → supervisor socket → agent).
 */
import { connectSupervisor } from "../../src/manager/client.ts";
import { execRequest } from "../../src/manager/exec.ts";
import { resolveWorkspace } from "../../src/manager/store.ts";
import { Pyro } from "../../src/sdk/index.ts";
import {
  type BenchCtx,
  cell,
  met,
  ms,
  PhaseSamples,
  Phases,
  PYRO,
  type Section,
  type SectionResult,
  sh,
  stats,
  table,
} from "./lib.ts";

const TARGET_RATIO = 3;

/** Create a workspace through the compiled CLI (so its supervisor is the shipped binary). */
export async function createWorkspaceCli(ctx: BenchCtx, extra: string[], env = ctx.env): Promise<string> {
  const r = await sh([PYRO, "workspace", "create", "debian:12", "--id-only", ...extra], { env });
  return r.stdout.trim();
}

export async function deleteWorkspaceCli(ctx: BenchCtx, id: string): Promise<number> {
  return (await sh([PYRO, "workspace", "delete", id, "--json"], { env: ctx.env, allowFail: true })).ms;
}

/** The SDK's execWorkspace, step by step (same calls as src/manager/workspaces.ts). */
export async function execSteps(home: string, id: string): Promise<{ name: string; ms: number }[]> {
  const p = new Phases();
  const r = await p.phase("resolve record (read + validate + supervisor pid/cmdline check)", () =>
    resolveWorkspace(home, id),
  );
  const conn = await p.phase("connect to supervisor.sock", () => connectSupervisor(home, r));
  try {
    await p.phase("ping on that connection (supervisor → agent → back)", () => conn.call({ op: "ping" }));
    const raw = await p.phase("exec `true` on that connection", () =>
      conn.call(execRequest({ command: ["true"] })),
    );
    p.phases.push({
      name: "  of which: agent-reported duration_ms (spawn → exit)",
      ms: Number(raw.duration_ms),
    });
  } finally {
    conn.close();
  }
  return p.phases;
}

export const execHost: Section = {
  id: "exec-host",
  title: "2. Exec round trip, host compat",
  async run(ctx): Promise<SectionResult> {
    const n = ctx.n(20, 10);
    const id = await createWorkspaceCli(ctx, ["--allow-host-compat"], { ...ctx.env, PYRO_BACKEND: "host" });
    try {
      const pyro = new Pyro({ home: ctx.home, env: ctx.env });
      // (a) raw spawn, in this process
      for (let i = 0; i < 3; i++) await Bun.spawn(["true"]).exited;
      const raw: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        await Bun.spawn(["true"]).exited;
        raw.push(performance.now() - t);
      }
      // (b) warm SDK
      for (let i = 0; i < 3; i++) await pyro.execWorkspace(id, ["true"]);
      const sdk: number[] = [];
      const agentDur: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        const r = await pyro.execWorkspace(id, ["true"]);
        sdk.push(performance.now() - t);
        agentDur.push(r.duration_ms);
        if (r.exit_code !== 0 || r.execution_mode !== "host_compat")
          throw new Error(`unexpected exec result ${JSON.stringify(r)}`);
      }
      // (c) CLI
      await sh([PYRO, "workspace", "exec", id, "--", "true"], { env: ctx.env });
      const cli: number[] = [];
      for (let i = 0; i < n; i++)
        cli.push((await sh([PYRO, "workspace", "exec", id, "--", "true"], { env: ctx.env })).ms);
      // breakdown
      const steps = new PhaseSamples();
      for (let i = 0; i < n; i++) steps.add(await execSteps(ctx.home, id));

      const sa = stats(raw);
      const sb = stats(sdk);
      const sc = stats(cli);
      const sd = stats(agentDur);
      const ratio = sb.median / sa.median;
      const ok = ratio <= TARGET_RATIO;
      const body = [
        table(
          ["Measurement", "N", "median (p90, min–max)", "Target", "Met"],
          [
            ['(a) `Bun.spawn(["true"])` + await exit, in-process', sa.n, cell(sa), "—", "—"],
            [
              '(b) `pyro.execWorkspace(id, ["true"])`, warm SDK',
              sb.n,
              cell(sb),
              `≤ ${TARGET_RATIO}× (a) = ${ms(TARGET_RATIO * sa.median)}`,
              `${met(ok)} (${ratio.toFixed(2)}×)`,
            ],
            ["  agent-reported `duration_ms` of those execs (integer ms)", sd.n, cell(sd), "—", "—"],
            ["(c) `dist/pyro workspace exec ID -- true` (CLI, spawn → exit)", sc.n, cell(sc), "—", "—"],
          ],
        ),
        "",
        "Where (b)'s time goes — the SDK path replayed step by step with the same manager functions:",
        "",
        table(
          ["Step", "N", "median (p90, min–max)"],
          steps.entries().map(([name, s]) => [name, s.n, cell(s)]),
        ),
        "",
        `Ratio (b)/(a) = **${ratio.toFixed(2)}×** (median). (c) − (b) = ${ms(sc.median - sb.median)}: the CLI process start (§1) plus module loading.`,
      ].join("\n");
      return {
        body,
        summary: [
          `Exec host compat: raw ${ms(sa.median)}, SDK ${ms(sb.median)} (${ratio.toFixed(2)}×, target ≤ ${TARGET_RATIO}×: ${ok ? "met" : "NOT met"}), CLI ${ms(sc.median)}`,
        ],
      };
    } finally {
      await deleteWorkspaceCli(ctx, id);
    }
  },
};
