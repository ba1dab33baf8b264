/**
 * §4 Guest exec: `true` in a started guest workspace through a warm SDK, against the cost
 * of spawning `true` inside the guest (agent-reported duration_ms, and a shell loop timed
 * with the guest's own clock).
 */
import { Pyro } from "../../src/sdk/index.ts";
import { createWorkspaceCli, deleteWorkspaceCli, execSteps, QUIESCE_MS } from "./exec-host.ts";
import {
  type BenchCtx,
  met,
  ms,
  PhaseSamples,
  PYRO,
  type Section,
  type SectionResult,
  sh,
  statHeader,
  statRow,
  stats,
  table,
} from "./lib.ts";

/** No target in the brief: the bench mirrors §2's, ≤ 3× the in-guest spawn (agent duration_ms). */
const TARGET_RATIO = 3;
const LOOP = 20;

/**
 * A started guest workspace (created through the compiled CLI, deleted afterwards) and one SDK
 * client for the section's calls, so that every call after the first goes through a warm SDK.
 */
export async function withGuestWorkspace<T>(
  ctx: BenchCtx,
  fn: (id: string, pyro: Pyro) => Promise<T>,
): Promise<T> {
  const id = await createWorkspaceCli(ctx, []);
  try {
    return await fn(id, new Pyro({ home: ctx.home, env: ctx.env }));
  } finally {
    await deleteWorkspaceCli(ctx, id);
  }
}

export const guestExec: Section = {
  id: "guest-exec",
  title: "4. Guest exec",
  async run(ctx: BenchCtx): Promise<SectionResult> {
    const n = ctx.n(20, 10);
    return withGuestWorkspace(ctx, async (id, pyro) => {
      for (let i = 0; i < 3; i++) await pyro.execWorkspace(id, ["true"]);
      const sdk: number[] = [];
      const agent: number[] = [];
      for (let i = 0; i < n; i++) {
        await Bun.sleep(QUIESCE_MS);
        const t = performance.now();
        const r = await pyro.execWorkspace(id, ["true"]);
        sdk.push(performance.now() - t);
        agent.push(r.duration_ms);
        if (r.exit_code !== 0 || r.execution_mode !== "guest")
          throw new Error(`unexpected ${JSON.stringify(r)}`);
      }
      // The guest's own fork+exec of /usr/bin/true from sh, timed with the guest clock.
      const loopScript = `s=$(date +%s%N); i=0; while [ $i -lt ${LOOP} ]; do /usr/bin/true; i=$((i+1)); done; e=$(date +%s%N); echo $(( (e - s) / ${LOOP} ))`;
      const loops: number[] = [];
      for (let i = 0; i < Math.max(3, Math.round(n / 4)); i++) {
        const r = await pyro.execWorkspace(id, ["sh", "-c", loopScript]);
        loops.push(Number(r.stdout.trim()) / 1e6);
      }
      // The workspace's wall clock against the host's (the agent set it from the hello).
      const skews: number[] = [];
      for (let i = 0; i < 3; i++) {
        const host = Date.now();
        const d = await pyro.execWorkspace(id, ["date", "+%s%N"]);
        skews.push(Number(d.stdout.trim()) / 1e6 - host);
      }
      const steps = new PhaseSamples();
      for (let i = 0; i < n; i++) {
        await Bun.sleep(QUIESCE_MS);
        steps.add(await execSteps(ctx.home, id));
      }
      const cli: number[] = [];
      await sh([PYRO, "workspace", "exec", id, "--", "true"], { env: ctx.env });
      for (let i = 0; i < Math.min(n, 10); i++) {
        cli.push((await sh([PYRO, "workspace", "exec", id, "--", "true"], { env: ctx.env })).ms);
      }

      const ss = stats(sdk);
      const sa = stats(agent);
      const sl = stats(loops);
      const sc = stats(cli);
      const sk = stats(skews);
      const ratio = ss.median / sa.median;
      const ok = ratio <= TARGET_RATIO;
      const body = [
        table(statHeader("Measurement", "Target", "Met"), [
          statRow(
            'warm SDK `pyro.execWorkspace(id, ["true"])` round trip',
            ss,
            `≤ ${TARGET_RATIO}× agent spawn = ${ms(TARGET_RATIO * sa.median)} (bench reference, mirrors §2)`,
            `${met(ok)} (${ratio.toFixed(2)}×)`,
          ),
          statRow(
            "agent-reported `duration_ms` (agent's Bun.spawn → exit, in the guest; integer ms)",
            sa,
            "—",
            "—",
          ),
          statRow(
            `guest \`sh\` loop: one \`/usr/bin/true\` fork+exec (guest clock, mean of ${LOOP})`,
            sl,
            "—",
            "—",
          ),
          statRow("`dist/pyro workspace exec ID -- true` (CLI, spawn → exit)", sc, "—", "—"),
          statRow("the workspace's wall clock − the host's (`date +%s%N` in the guest)", sk, "—", "—"),
        ]),
        "",
        "The SDK path step by step (same manager functions as `execWorkspace`):",
        "",
        table(statHeader("Step"), steps.rows()),
        "",
        `Round trip − agent spawn = ${ms(ss.median - sa.median)} (median): host record + socket work, the supervisor hop, and the virtio-serial transport under emulation. The agent's own spawn is ${(sa.median / sl.median).toFixed(1)}× a bare fork+exec from \`sh\` in the same guest.`,
      ].join("\n");
      return {
        body,
        summary: [
          `Guest exec: SDK ${ms(ss.median)} vs agent spawn ${ms(sa.median)} (${ratio.toFixed(2)}×; reference ≤ ${TARGET_RATIO}×: ${ok ? "met" : "NOT met"}), sh loop ${ms(sl.median)}/exec, CLI ${ms(sc.median)}`,
        ],
      };
    });
  },
};
