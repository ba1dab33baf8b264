/**
 * Shell round trip (issue 10): in a started guest workspace through a warm SDK, `shell_write`
 * of `echo` followed by `shell_read` with wait_for_idle_ms — the loop an agent runs at a
 * terminal — timed from the write until the read returned with the answer in it. The read
 * waits for IDLE_MS of quiet after the answer, so the table also shows the round trip less
 * that window (what the shell itself costs). Baseline in the same run: the same `echo` as a
 * one-shot exec through the same SDK. Issue 10 names no target: the figures are the result.
 */
import { QUIESCE_MS } from "./exec-host.ts";
import { withGuestWorkspace } from "./guest-exec.ts";
import {
  type BenchCtx,
  ms,
  type Section,
  type SectionResult,
  statHeader,
  statRow,
  stats,
  table,
} from "./lib.ts";

const IDLE_MS = 100;

export const shellSection: Section = {
  id: "shell",
  title: "12. Shell round trip",
  async run(ctx: BenchCtx): Promise<SectionResult> {
    const n = ctx.n(30, 10);
    return withGuestWorkspace(ctx, async (id, pyro) => {
      const sh = (await pyro.openShell(id)).shell_id;
      let cursor = (await pyro.readShell(id, sh, { wait_for_idle_ms: 500 })).next_cursor;
      const roundTrips: number[] = [];
      const execs: number[] = [];
      for (let i = 0; i < n + 2; i++) {
        await Bun.sleep(QUIESCE_MS);
        const answer = `answer-${i * 7 + 1000}`;
        let t = performance.now();
        await pyro.writeShell(id, sh, `echo answer-$((${i} * 7 + 1000))`);
        for (;;) {
          const r = await pyro.readShell(id, sh, { cursor, wait_for_idle_ms: IDLE_MS });
          cursor = r.next_cursor;
          if (r.output.includes(`${answer}\r\n`)) break;
        }
        const rt = performance.now() - t;
        await Bun.sleep(QUIESCE_MS);
        t = performance.now();
        const e = await pyro.execWorkspace(id, ["echo", answer]);
        const ex = performance.now() - t;
        if (e.stdout !== `${answer}\n`) throw new Error(`exec answered ${JSON.stringify(e.stdout)}`);
        if (i >= 2) {
          // the first two warm both paths up
          roundTrips.push(rt);
          execs.push(ex);
        }
      }
      await pyro.closeShell(id, sh);
      const srt = stats(roundTrips);
      const lessIdle = stats(roundTrips.map((x) => x - IDLE_MS));
      const sex = stats(execs);
      const body = [
        table(statHeader("Measurement", "Note"), [
          statRow(
            `shell_write \`echo\` → shell_read (wait_for_idle_ms ${IDLE_MS}) with the answer`,
            srt,
            "one write call, then reads until the answer is in (normally one)",
          ),
          statRow(
            `the same less the ${IDLE_MS} ms idle window`,
            lessIdle,
            `${(lessIdle.median / sex.median).toFixed(2)}× the exec`,
          ),
          statRow("baseline: `echo` as a one-shot workspace exec (warm SDK)", sex, "same run, interleaved"),
        ]),
        "",
        `A shell read with wait_for_idle_ms returns once the shell has printed nothing for that long after the answer, so every round trip holds one idle window by design (an agent picks it: shorter returns sooner, but may cut a slow command's output). The answer is matched in the raw output (\`answer-N\\r\\n\`), after the PTY's echo of the command.`,
      ].join("\n");
      return {
        body,
        summary: [
          `Shell round trip (write → idle read, wait_for_idle_ms ${IDLE_MS}): ${ms(srt.median)} (${ms(lessIdle.median)} without the idle window) vs one-shot exec ${ms(sex.median)}`,
        ],
      };
    });
  },
};
