/**
 * §5 Footprint: agent memory in the guest, host disk per new workspace, host RAM and idle
 * CPU per workspace (supervisor + VMM), for a guest workspace and a host-compat one.
 */

import { readFileSync, statSync } from "node:fs";
import { callWorkspace } from "../../src/manager/client.ts";
import { dataDiskPath, workspaceDir } from "../../src/manager/paths.ts";
import { readRecord } from "../../src/manager/record.ts";
import { Pyro } from "../../src/sdk/index.ts";
import { createWorkspaceCli, deleteWorkspaceCli } from "./exec-host.ts";
import {
  type BenchCtx,
  cpuTicks,
  mib,
  rssAnon,
  type Section,
  type SectionResult,
  sh,
  stats,
  table,
  vmRss,
} from "./lib.ts";

const IDLE_SETTLE_MS = 3000;
const CPU_WINDOW_MS = 10_000;

async function duKiB(path: string): Promise<number> {
  const r = await sh(["du", "-sk", path]);
  return Number(r.stdout.split(/\s+/)[0]);
}

/** QEMU's RSS by mapping: the guest RAM block, TCG's translation buffer (the rwx anon map), the rest. */
function qemuRssParts(pid: number, memMib: number): { guestRam: number; tcgBuffer: number; other: number } {
  const out = { guestRam: 0, tcgBuffer: 0, other: 0 };
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, "utf8");
  } catch {
    return { guestRam: Number.NaN, tcgBuffer: Number.NaN, other: Number.NaN };
  }
  let kind: keyof typeof out = "other";
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      const sizeKiB = (Number.parseInt(m[2]!, 16) - Number.parseInt(m[1]!, 16)) / 1024;
      const anon = m[4] === "";
      if (anon && m[3] === "rwxp") kind = "tcgBuffer";
      else if (anon && sizeKiB === memMib * 1024) kind = "guestRam";
      else kind = "other";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) out[kind] += Number(rss[1]) * 1024;
  }
  return out;
}

interface Sample {
  diskKiB: number;
  diskAfterExecKiB: number;
  apparentDiskBytes: number;
  supervisorRss: number;
  supervisorAnon: number;
  vmmRss: number;
  vmmAnon: number;
  idleCpuVmm: number;
  idleCpuSup: number;
  agentRss: number;
  guestMemTotal: number;
  guestMemUsed: number;
  guestAgentAnon: number;
  qemuGuestRam: number;
  qemuTcgBuffer: number;
  qemuOther: number;
}

async function measure(ctx: BenchCtx, guest: boolean): Promise<Sample> {
  const env = guest ? ctx.env : { ...ctx.env, PYRO_BACKEND: "host" };
  const id = await createWorkspaceCli(ctx, guest ? [] : ["--allow-host-compat"], env);
  try {
    const diskKiB = await duKiB(workspaceDir(ctx.home, id));
    const r = readRecord(ctx.home, id)!;
    const sup = r.supervisor_pid!;
    const vmm = r.vmm_pid!;
    const pyro = new Pyro({ home: ctx.home, env: ctx.env });
    // A first exec (as any user would do), then let it settle.
    await pyro.execWorkspace(id, ["true"]);
    await Bun.sleep(IDLE_SETTLE_MS);
    const diskAfterExecKiB = await duKiB(workspaceDir(ctx.home, id));
    const t0 = [cpuTicks(vmm), cpuTicks(sup)];
    const w0 = performance.now();
    await Bun.sleep(CPU_WINDOW_MS);
    const secs = (performance.now() - w0) / 1000;
    const idleCpuVmm = (cpuTicks(vmm) - t0[0]!) / 100 / secs;
    const idleCpuSup = (cpuTicks(sup) - t0[1]!) / 100 / secs;
    const info = await callWorkspace(ctx.home, r, { op: "info" });
    const mem = info.memory as { total_bytes: number; available_bytes: number };
    // The agent's anonymous memory as the guest kernel sees it (tini's child). On the host
    // the same scan would find other agents, so host compat reads the agent's pid directly.
    let agentAnon = rssAnon(vmm);
    if (guest) {
      const anon = await pyro.execWorkspace(id, [
        "sh",
        "-c",
        'for p in /proc/[0-9]*; do case "$(tr "\\0" " " <$p/cmdline 2>/dev/null)" in "/usr/local/bin/pyro-agent serve"*) grep RssAnon $p/status;; esac; done | head -1',
      ]);
      agentAnon = Number(/(\d+)\s*kB/.exec(anon.stdout)?.[1]) * 1024;
    }
    // setpriv execs in place: vmm_pid is QEMU itself, or the host agent itself.
    const vmmPid = vmm;
    const parts = guest ? qemuRssParts(vmmPid, r.mem_mib) : { guestRam: 0, tcgBuffer: 0, other: 0 };
    return {
      qemuGuestRam: parts.guestRam,
      qemuTcgBuffer: parts.tcgBuffer,
      qemuOther: parts.other,
      diskKiB,
      diskAfterExecKiB,
      apparentDiskBytes: guest ? statSync(dataDiskPath(ctx.home, id)).size : 0,
      supervisorRss: vmRss(sup),
      supervisorAnon: rssAnon(sup),
      vmmRss: vmRss(vmmPid),
      vmmAnon: rssAnon(vmmPid),
      idleCpuVmm,
      idleCpuSup,
      agentRss: Number(info.agent_rss_bytes),
      guestMemTotal: mem.total_bytes,
      guestMemUsed: mem.total_bytes - mem.available_bytes,
      guestAgentAnon: agentAnon,
    };
  } finally {
    await deleteWorkspaceCli(ctx, id);
  }
}

const cpu = (x: number) => `${(x * 100).toFixed(1)} % of a core`;

export const footprint: Section = {
  id: "footprint",
  title: "5. Footprint",
  async run(ctx: BenchCtx): Promise<SectionResult> {
    const n = ctx.n(2, 1);
    const g: Sample[] = [];
    const h: Sample[] = [];
    for (let i = 0; i < n; i++) {
      ctx.log(`footprint: guest workspace ${i + 1}/${n}`);
      g.push(await measure(ctx, true));
      ctx.log(`footprint: host-compat workspace ${i + 1}/${n}`);
      h.push(await measure(ctx, false));
    }
    const med = (xs: Sample[], f: (s: Sample) => number) => stats(xs.map(f)).median;
    const range = (xs: Sample[], f: (s: Sample) => number, fmt: (x: number) => string) => {
      const s = stats(xs.map(f));
      return s.n > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);
    };
    const kib = (x: number) => `${Math.round(x)} KiB`;
    const NT = "none set (reported only)";
    /** "VmRSS range (RssAnon median)" */
    const rssCell = (xs: Sample[], rss: (s: Sample) => number, anon: (s: Sample) => number) =>
      `${range(xs, rss, mib)} (${mib(med(xs, anon))})`;
    /** A row measured on both kinds: guest and host-compat ranges, no target. */
    const both = (label: string, f: (s: Sample) => number, fmt: (x: number) => string) => [
      label,
      range(g, f, fmt),
      range(h, f, fmt),
      NT,
      "—",
    ];
    const body = [
      `Each workspace was created with \`dist/pyro workspace create\` (defaults: 1 vCPU, 1024 MiB, 8 GiB data disk), given one \`exec true\`, left idle ${IDLE_SETTLE_MS / 1000} s, then sampled; idle CPU over ${CPU_WINDOW_MS / 1000} s from /proc/PID/stat. N = ${n} workspace(s) of each kind (median, min–max when N > 1).`,
      "",
      table(
        ["Measurement", "guest (QEMU)", "host compat", "Target", "Met"],
        [
          both("agent RSS in the guest (`info` → `agent_rss_bytes`)", (s) => s.agentRss, mib),
          both(
            "agent RssAnon (guest: /proc in the guest; host compat: the host agent)",
            (s) => s.guestAgentAnon,
            mib,
          ),
          [
            "guest memory in use (total − available) / total",
            `${mib(med(g, (s) => s.guestMemUsed))} / ${mib(med(g, (s) => s.guestMemTotal))}`,
            "—",
            NT,
            "—",
          ],
          both(
            "host disk per new workspace (`du -sk` of its dir, right after create)",
            (s) => s.diskKiB,
            kib,
          ),
          both("  after one exec + idle", (s) => s.diskAfterExecKiB, kib),
          ["  data disk apparent size (sparse)", mib(med(g, (s) => s.apparentDiskBytes)), "—", "—", "—"],
          [
            "host RAM: supervisor VmRSS (RssAnon)",
            rssCell(
              g,
              (s) => s.supervisorRss,
              (s) => s.supervisorAnon,
            ),
            rssCell(
              h,
              (s) => s.supervisorRss,
              (s) => s.supervisorAnon,
            ),
            NT,
            "—",
          ],
          [
            "host RAM: VMM (QEMU) / host agent VmRSS (RssAnon)",
            rssCell(
              g,
              (s) => s.vmmRss,
              (s) => s.vmmAnon,
            ),
            rssCell(
              h,
              (s) => s.vmmRss,
              (s) => s.vmmAnon,
            ),
            NT,
            "—",
          ],
          [
            "  QEMU RSS by mapping: guest RAM / TCG translation buffer (rwx anon) / everything else (/proc/PID/smaps)",
            `${mib(med(g, (s) => s.qemuGuestRam))} / ${mib(med(g, (s) => s.qemuTcgBuffer))} / ${mib(med(g, (s) => s.qemuOther))}`,
            "—",
            NT,
            "—",
          ],
          [
            "host RAM per idle workspace (supervisor + VMM/agent VmRSS)",
            mib(med(g, (s) => s.supervisorRss + s.vmmRss)),
            mib(med(h, (s) => s.supervisorRss + s.vmmRss)),
            NT,
            "—",
          ],
          both("host CPU while idle: VMM / host agent", (s) => s.idleCpuVmm, cpu),
          both("host CPU while idle: supervisor", (s) => s.idleCpuSup, cpu),
        ],
      ),
      "",
      "VmRSS counts shared pages (the 100 MB Bun executables are mapped file pages, shared between processes running the same binary); RssAnon is what each process adds on its own. Under TCG, QEMU's largest item is usually its translation buffer (translated guest code; QEMU 7.2 reserves 1 GiB, `-accel tcg,tb-size=MiB` caps it), not guest RAM; KVM has no such buffer.",
    ].join("\n");
    return {
      body,
      summary: [
        `Footprint: agent RSS ${mib(med(g, (s) => s.agentRss))} (guest); host RAM/idle guest workspace ${mib(med(g, (s) => s.supervisorRss + s.vmmRss))} (QEMU ${mib(med(g, (s) => s.vmmRss))}); disk/new workspace ${Math.round(med(g, (s) => s.diskKiB))} KiB; idle QEMU CPU ${cpu(med(g, (s) => s.idleCpuVmm))}`,
      ],
    };
  },
};
