/**
 * Shared pieces of `bun run bench`: statistics, timing, child processes, markdown tables,
 * and the context every section gets (its own PYRO_HOME, the built executables).
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");
export const DIST = join(ROOT, "dist");
export const PYRO = join(DIST, "pyro");

export interface BenchCtx {
  /** The bench's own PYRO_HOME (a temp dir, removed at the end). */
  home: string;
  /** Environment for every pyro child process and every in-process Pyro/ctx. */
  env: Record<string, string | undefined>;
  quick: boolean;
  /** Iterations: full value, or the quick one with --quick. */
  n(full: number, quick: number): number;
  log(line: string): void;
}

export interface SectionResult {
  /** Markdown body (tables and notes), without the section heading. */
  body: string;
  /** One line per target for the console summary. */
  summary: string[];
}

export interface Section {
  id: string;
  title: string;
  run(ctx: BenchCtx): Promise<SectionResult>;
}

// ---------- statistics ----------

export interface Stats {
  n: number;
  median: number;
  p90: number;
  min: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of a sorted array. */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length === 0 ? Number.NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return {
    n: s.length,
    median,
    p90: percentile(s, 90),
    min: s[0] ?? Number.NaN,
    max: s.at(-1) ?? Number.NaN,
    mean: s.reduce((a, b) => a + b, 0) / (s.length || 1),
  };
}

// ---------- formatting ----------

/** Milliseconds with sensible precision: 0.123 ms, 12.3 ms, 1234 ms. */
export function ms(x: number): string {
  if (!Number.isFinite(x)) return "—";
  const a = Math.abs(x);
  if (a < 1) return `${x.toFixed(3)} ms`;
  if (a < 100) return `${x.toFixed(1)} ms`;
  return `${Math.round(x)} ms`;
}

/** Proportional set size (shared pages split among their users) from smaps_rollup; NaN when gone. */
export function pss(pid: number | null | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * Where a QEMU process's PSS goes (bytes), from /proc/PID/smaps: `tb`, TCG's translation
 * buffer (the one anonymous rwx mapping; none under KVM); `ramPrivate`, guest RAM pages this
 * VM holds alone (Private_Dirty of the guest RAM mapping, its largest: a template clone's
 * copies of pages it wrote, or all of a cold boot's touched RAM); `ramShared`, the rest of the
 * guest RAM mapping's PSS (a clone's share of the template's pages); `rest`, QEMU itself,
 * split into `restAnon` (heap, malloc arenas, TCG tables, thread stacks) and `restFiles` (its
 * binary and libraries: their writable data and its share of their code). `anonHuge`: the
 * bytes of all mappings backed by transparent huge pages (AnonHugePages). NaN fields when the
 * process is gone.
 */
export function qemuPssBreakdown(pid: number | null | undefined): {
  tb: number;
  ramPrivate: number;
  ramShared: number;
  rest: number;
  restAnon: number;
  restFiles: number;
  anonHuge: number;
} {
  const none = {
    tb: Number.NaN,
    ramPrivate: Number.NaN,
    ramShared: Number.NaN,
    rest: Number.NaN,
    restAnon: Number.NaN,
    restFiles: Number.NaN,
    anonHuge: Number.NaN,
  };
  if (!pid) return none;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, "utf8");
  } catch {
    return none;
  }
  const maps: {
    perms: string;
    file: boolean;
    size: number;
    pss: number;
    privateDirty: number;
    huge: number;
  }[] = [];
  for (const line of text.split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(\S*)/.exec(line);
    if (head) {
      maps.push({
        perms: head[1]!,
        file: head[2]!.startsWith("/"),
        size: 0,
        pss: 0,
        privateDirty: 0,
        huge: 0,
      });
      continue;
    }
    const f = /^(Size|Pss|Private_Dirty|AnonHugePages):\s+(\d+) kB/.exec(line);
    const m = maps.at(-1);
    if (!f || !m) continue;
    const v = Number(f[2]) * 1024;
    if (f[1] === "Size") m.size = v;
    else if (f[1] === "Pss") m.pss = v;
    else if (f[1] === "Private_Dirty") m.privateDirty = v;
    else m.huge = v;
  }
  const sum = (xs: typeof maps) => xs.reduce((a, m) => a + m.pss, 0);
  const total = sum(maps);
  const tbMaps = maps.filter((m) => m.perms.startsWith("rwx"));
  const tb = sum(tbMaps);
  const ram = maps.filter((m) => !m.perms.startsWith("rwx")).sort((a, b) => b.size - a.size)[0];
  const ramPrivate = ram ? Math.min(ram.privateDirty, ram.pss) : 0;
  const ramShared = ram ? ram.pss - ramPrivate : 0;
  const rest = total - tb - ramPrivate - ramShared;
  const restFiles = sum(maps.filter((m) => m !== ram && m.file && !tbMaps.includes(m)));
  return {
    tb,
    ramPrivate,
    ramShared,
    rest,
    restAnon: rest - restFiles,
    restFiles,
    anonHuge: maps.reduce((a, m) => a + m.huge, 0),
  };
}

export function mib(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : "—";
}

export function pct(x: number): string {
  return Number.isFinite(x) ? `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)} %` : "—";
}

/** "median (p90, min–max)" cell. */
export function cell(s: Stats): string {
  return `${ms(s.median)} (p90 ${ms(s.p90)}, ${ms(s.min)}–${ms(s.max)})`;
}

/** The header that goes with statRow: first column, N, "median (p90, min–max)", then the rest. */
export function statHeader(first: string, ...rest: string[]): string[] {
  return [first, "N", "median (p90, min–max)", ...rest];
}

/** A table row for one measurement: label, N, "median (p90, min–max)", then any further cells. */
export function statRow(label: string, s: Stats, ...rest: (string | number)[]): (string | number)[] {
  return [label, s.n, cell(s), ...rest];
}

export function table(header: string[], rows: (string | number)[][]): string {
  const esc = (c: string | number) => String(c).replaceAll("|", "\\|");
  return [
    `| ${header.map(esc).join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n");
}

export const met = (ok: boolean) => (ok ? "**yes**" : "**no**");

// ---------- timing ----------

export async function timeAsync<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

/** Named phase timer: `await p.phase("x", () => ...)`; `p.phases` keeps the order. */
export class Phases {
  readonly phases: { name: string; ms: number }[] = [];
  async phase<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      this.phases.push({ name, ms: performance.now() - t });
    }
  }
}

/** Collect per-phase samples over many runs, keeping first-seen order. */
export class PhaseSamples {
  private order: string[] = [];
  private samples = new Map<string, number[]>();
  add(phases: { name: string; ms: number }[]): void {
    for (const p of phases) {
      if (!this.samples.has(p.name)) {
        this.order.push(p.name);
        this.samples.set(p.name, []);
      }
      this.samples.get(p.name)!.push(p.ms);
    }
  }
  median(name: string): number {
    const xs = this.samples.get(name);
    return xs ? stats(xs).median : Number.NaN;
  }
  entries(): [string, Stats][] {
    return this.order.map((n) => [n, stats(this.samples.get(n)!)]);
  }
  /** One statRow per phase, in order. */
  rows(): (string | number)[][] {
    return this.entries().map(([name, s]) => statRow(name, s));
  }
}

// ---------- processes ----------

export interface RunOut {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Spawn, wait for exit, and time it (spawn → exit). Throws on a non-zero exit unless allowed. */
export async function sh(
  argv: string[],
  opts: { env?: Record<string, string | undefined>; allowFail?: boolean; cwd?: string } = {},
): Promise<RunOut> {
  const t = performance.now();
  const proc = Bun.spawn(argv, {
    env: opts.env as Record<string, string>,
    cwd: opts.cwd,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const took = performance.now() - t;
  if (code !== 0 && !opts.allowFail) {
    throw new Error(`${argv.join(" ")} exited ${code}\n${stderr.slice(-2000)}${stdout.slice(-1000)}`);
  }
  return { code, stdout, stderr, ms: took };
}

/** A "NAME: N kB" field of /proc/PID/status in bytes (NaN when gone). */
function statusBytes(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** VmRSS of a process in bytes (NaN when gone). */
export const vmRss = (pid: number): number => statusBytes(pid, "VmRSS");

/** RssAnon of a process in bytes (NaN when gone). */
export const rssAnon = (pid: number): number => statusBytes(pid, "RssAnon");

/** utime + stime of a process, in clock ticks (USER_HZ = 100 on Linux). */
export function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields after ")" start at field 3 (state); utime is field 14, stime 15.
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return Number.NaN;
  }
}

export function loadAvg(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

/** pids of the direct children of a process. */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** When a process started, on the Date.now() scale (10 ms resolution: USER_HZ ticks). */
export function processStartEpochMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const startTicks = Number(rest[19]); // field 22
    const uptimeS = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    return Date.now() - (uptimeS - startTicks / 100) * 1000;
  } catch {
    return Number.NaN;
  }
}
