/**
 * Services: `service start` of an immediately-ready service (its readiness file already exists,
 * so the first probe, which runs at once, passes) timed from the call until it returns `ready`,
 * against a plain exec round trip (`true`) through the same warm SDK as the baseline. Runs are
 * interleaved; each service is stopped (untimed) before the next start. Target (issue 11): start
 * → ready ≤ the probe interval (500 ms) + 50 ms.
 */
import { QUIESCE_MS } from "./exec-host.ts";
import { withGuestWorkspace } from "./guest-exec.ts";
import {
  type BenchCtx,
  met,
  ms,
  type Section,
  type SectionResult,
  statHeader,
  statRow,
  stats,
  table,
} from "./lib.ts";

const INTERVAL_MS = 500;
const TARGET_MS = INTERVAL_MS + 50;

export const servicesSection: Section = {
  id: "services",
  title: "14. Services: start → ready",
  async run(ctx: BenchCtx): Promise<SectionResult> {
    const n = ctx.n(15, 5);
    return withGuestWorkspace(ctx, async (id, pyro) => {
      await pyro.execWorkspace(id, ["touch", "/workspace/ready"]);
      for (let i = 0; i < 3; i++) await pyro.execWorkspace(id, ["true"]);
      const start: number[] = [];
      const exec: number[] = [];
      for (let i = 0; i < n; i++) {
        await Bun.sleep(QUIESCE_MS);
        let t = performance.now();
        await pyro.execWorkspace(id, ["true"]);
        exec.push(performance.now() - t);
        await Bun.sleep(QUIESCE_MS);
        t = performance.now();
        const s = await pyro.startService(id, "bench", ["sleep", "600"], {
          readiness: { type: "file", path: "ready" },
          ready_interval_ms: INTERVAL_MS,
        });
        start.push(performance.now() - t);
        if (s.state !== "ready") throw new Error(`service not ready: ${JSON.stringify(s)}`);
        await pyro.stopService(id, "bench", { grace_seconds: 1 });
      }
      const ss = stats(start);
      const se = stats(exec);
      const ok = ss.median <= TARGET_MS;
      const body = [
        table(statHeader("Measurement", "Ratio to exec (median)", "Target", "Met"), [
          statRow(
            "`service start` → ready (readiness file already there; warm SDK)",
            ss,
            `${(ss.median / se.median).toFixed(2)}×`,
            `≤ ${TARGET_MS} ms (interval ${INTERVAL_MS} ms + 50 ms)`,
            met(ok),
          ),
          statRow("baseline: `exec true` round trip (warm SDK)", se, "1.00×", "—", "—"),
        ]),
        "",
        `A start is: the supervisor writes the record and log files, opens service.start on the agent, the agent spawns the process group and runs the first probe at once (then every ready_interval_ms), and the supervisor answers on the ready event. The interval only matters when the first probe fails.`,
      ].join("\n");
      return {
        body,
        summary: [
          `Service start → ready: ${ms(ss.median)} median vs exec ${ms(se.median)} (target ≤ ${TARGET_MS} ms: ${ok ? "met" : "NOT met"})`,
        ],
      };
    });
  },
};
