/**
 * §10 Pause and resume: a started guest workspace running a daemon started by exec (a setsid
 * shell loop that bumps a counter in /tmp every 200 ms; `service start` services end at pause)
 * is paused and resumed (machine state saved to the
 * host and restored), interleaved with a stop + start of the same workspace (clean power-off
 * and cold boot, today's only way to free its RAM) as the baseline. Each resume is checked:
 * the counter's pid is the same and it has gone on counting. Also: the saved state's size and
 * the VMM's host PSS (/proc/PID/smaps_rollup) after a cold boot vs after a resume, and N idle
 * workspaces side by side: host PSS each (VMM + supervisor), then paused (no process; the
 * memory file on disk).
 */
import { readRecord } from "../../src/manager/record.ts";
import { Pyro } from "../../src/sdk/index.ts";
import { createWorkspaceCli, deleteWorkspaceCli, QUIESCE_MS } from "./exec-host.ts";
import { withGuestWorkspace } from "./guest-exec.ts";
import {
  type BenchCtx,
  mib,
  pss,
  type Section,
  type SectionResult,
  statHeader,
  statRow,
  stats,
  table,
} from "./lib.ts";

const SERVICE =
  "setsid -f sh -c 'echo $$ > /tmp/svc.pid; i=0; while :; do i=$((i+1)); echo $i > /tmp/svc.count; sleep 0.2; done' </dev/null >/dev/null 2>&1";

const IDLE_SETTLE_MS = 5000;

export const pauseSection: Section = {
  id: "pause",
  title: "10. Pause and resume",
  async run(ctx: BenchCtx): Promise<SectionResult> {
    const n = ctx.n(4, 2);
    return withGuestWorkspace(ctx, async (id) => {
      const pyro = new Pyro({ home: ctx.home, env: ctx.env });
      const service = async () => {
        const r = await pyro.execWorkspace(id, [
          "sh",
          "-c",
          `${SERVICE}; sleep 1; cat /tmp/svc.pid /tmp/svc.count`,
        ]);
        if (r.exit_code !== 0) throw new Error(`service start failed: ${r.stderr}`);
      };
      const probe = async () => {
        const r = await pyro.execWorkspace(id, ["sh", "-c", "cat /tmp/svc.pid /tmp/svc.count"]);
        const [pid, count] = r.stdout.trim().split("\n");
        return { pid, count: Number(count) };
      };
      await service();
      const pause: number[] = [];
      const resume: number[] = [];
      const stop: number[] = [];
      const start: number[] = [];
      const memBytes: number[] = [];
      const pssCold: number[] = [];
      const pssResumed: number[] = [];
      for (let i = 0; i < n; i++) {
        // cold: stop + start, then the service again (a cold boot has lost it)
        await Bun.sleep(QUIESCE_MS);
        let t = performance.now();
        await pyro.stopWorkspace(id);
        stop.push(performance.now() - t);
        t = performance.now();
        await pyro.startWorkspace(id);
        start.push(performance.now() - t);
        await service();
        await Bun.sleep(QUIESCE_MS);
        pssCold.push(pss(readRecord(ctx.home, id)?.vmm_pid));
        // pause + resume: the service must go on
        const before = await probe();
        t = performance.now();
        const p = await pyro.pauseWorkspace(id);
        pause.push(performance.now() - t);
        memBytes.push(p.memory_bytes);
        t = performance.now();
        const r = await pyro.resumeWorkspace(id);
        resume.push(performance.now() - t);
        if (r.resumed_from !== "memory") throw new Error(`resume booted cold: ${r.note}`);
        const after = await probe();
        if (after.pid !== before.pid || !(after.count > before.count))
          throw new Error(`the service did not carry on: ${JSON.stringify({ before, after })}`);
        await Bun.sleep(QUIESCE_MS);
        pssResumed.push(pss(readRecord(ctx.home, id)?.vmm_pid));
      }
      // N idle workspaces side by side (this one plus N-1 fresh ones): host PSS per workspace
      // (VMM + supervisor), then each paused: no process left, only its memory file on disk.
      const idleN = ctx.n(4, 2);
      const others: string[] = [];
      const idlePss: number[] = [];
      const pausedDisk: number[] = [];
      try {
        for (let i = 1; i < idleN; i++) others.push(await createWorkspaceCli(ctx, []));
        await Bun.sleep(IDLE_SETTLE_MS);
        for (const w of [id, ...others]) {
          const rec = readRecord(ctx.home, w);
          idlePss.push(pss(rec?.vmm_pid) + pss(rec?.supervisor_pid));
        }
        for (const w of [id, ...others]) pausedDisk.push((await pyro.pauseWorkspace(w)).memory_bytes);
      } finally {
        for (const w of others) await deleteWorkspaceCli(ctx, w);
        await pyro.resumeWorkspace(id);
      }
      const both = (a: number[], b: number[]) => a.map((x, i) => x + (b[i] as number));
      const pr = stats(both(pause, resume));
      const ss = stats(both(stop, start));
      const body = [
        table(statHeader("Measurement", "Ratio (median)"), [
          statRow(
            "pause + resume (a daemon started by exec keeps running)",
            pr,
            `${(ss.median / pr.median).toFixed(2)}× faster`,
          ),
          statRow("  pause (sync, save state, end VMM)", stats(pause), "—"),
          statRow("  resume (restore state, hello, clock)", stats(resume), "—"),
          statRow("stop + start (baseline: clean power-off, cold boot; the daemon is lost)", ss, "1×"),
          statRow("  stop", stats(stop), "—"),
          statRow("  start", stats(start), "—"),
        ]),
        "",
        table(
          ["Size", "median", "min–max", "N"],
          [
            [
              "saved machine state (memory file)",
              mib(stats(memBytes).median),
              `${mib(stats(memBytes).min)}–${mib(stats(memBytes).max)}`,
              memBytes.length,
            ],
            [
              "VMM host PSS after a cold boot + service",
              mib(stats(pssCold).median),
              `${mib(stats(pssCold).min)}–${mib(stats(pssCold).max)}`,
              pssCold.length,
            ],
            [
              `idle workspace, ${idlePss.length} side by side: host PSS of VMM + supervisor (target for templated ones ≤ 40 MiB: templates not built)`,
              mib(stats(idlePss).median),
              `${mib(stats(idlePss).min)}–${mib(stats(idlePss).max)}`,
              idlePss.length,
            ],
            [
              "the same workspaces paused: host RAM 0 (no process); memory file on disk",
              mib(stats(pausedDisk).median),
              `${mib(stats(pausedDisk).min)}–${mib(stats(pausedDisk).max)}`,
              pausedDisk.length,
            ],
            [
              "VMM host PSS after a resume",
              mib(stats(pssResumed).median),
              `${mib(stats(pssResumed).min)}–${mib(stats(pssResumed).max)}`,
              pssResumed.length,
            ],
          ],
        ),
        "",
        "Default machine shape (1 vCPU, 1024 MiB). Timed through the SDK (in-process manager; each call launches or ends the detached supervisor). Zero pages travel as a flag, so the memory file is about the guest's used RAM. While paused a workspace holds no host RAM at all. A resumed VMM, though, holds every guest page on this host: QEMU's loader reads each zero page to check it, and this host's kernel allocates on a read fault of untouched anonymous memory instead of mapping the shared zero page (docs/qemu.md), so here a resumed workspace costs more host RAM than a cold-booted one until it is stopped. The way out is the template design (guest RAM in a file mapped private, loaded on touch) or free-page reporting (needs CONFIG_VIRTIO_BALLOON + CONFIG_PAGE_REPORTING in the guest kernel, not in it today); neither is built yet.",
      ].join("\n");
      return {
        body,
        summary: [
          `Pause + resume: ${(pr.median / 1000).toFixed(1)} s vs stop + start ${(ss.median / 1000).toFixed(1)} s (${(ss.median / pr.median).toFixed(2)}×), state ${mib(stats(memBytes).median)}`,
        ],
      };
    });
  },
};
