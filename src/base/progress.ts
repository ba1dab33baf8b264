/**
 * Progress of long steps (kernel build, debootstrap, layer download and upload, mkfs, recipe
 * builds): every layer reports through one sink, `(line, event?)`. `line` is the human text
 * (always complete on its own); `event`, when the step can say how far it is, carries
 * `done`/`total` in bytes or steps. The faces render it:
 * - CLI on a terminal (stderr is a TTY): a step with a total redraws one bar in place
 *   (`\r`, bytes or steps, percent, ETA from the rate since the step began) and ends it with
 *   a newline when done or when another line comes; everything else is a line.
 * - CLI off a terminal: lines, exactly the `line` text (no `\r`, no bar): every report, except
 *   that a byte count prints its first report, each further quarter and its end, so logs and
 *   CI stay readable. `--json` output is on stdout and never carries progress.
 * - MCP: `notifications/progress` for a request that carries a progressToken (src/mcp/server.ts).
 */

export interface ProgressEvent {
  /** names the step; reports of one step share it (e.g. "rootfs: downloaded") */
  step: string;
  done: number;
  total: number;
  unit: "bytes" | "steps";
}

export type ProgressSink = (line: string, event?: ProgressEvent) => void;

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
      : `${s}s`;
}

/** One bar line: `step [#####-----]  45%  120.0 MiB / 256.0 MiB  ETA 12s`. */
export function renderBar(ev: ProgressEvent, elapsedMs: number, width = 24): string {
  const frac = ev.total > 0 ? Math.min(1, ev.done / ev.total) : 0;
  const filled = Math.round(frac * width);
  const amount =
    ev.unit === "bytes" ? `${formatBytes(ev.done)} / ${formatBytes(ev.total)}` : `${ev.done}/${ev.total}`;
  const rate = elapsedMs > 0 ? ev.done / (elapsedMs / 1000) : 0;
  const eta =
    ev.done >= ev.total ? "done" : `ETA ${formatEta(rate > 0 ? (ev.total - ev.done) / rate : Number.NaN)}`;
  return `${ev.step} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(Math.round(frac * 100)).padStart(3)}%  ${amount}  ${eta}`;
}

/**
 * The CLI's sink: bars on a terminal, lines elsewhere (see the header). `now` is injectable
 * for tests.
 */
export function terminalProgress(
  out: { write(s: string): unknown; isTTY?: boolean },
  now: () => number = Date.now,
): ProgressSink {
  if (!out.isTTY) {
    // A line per report, except byte counts: their first report, each further quarter of the
    // way, and the end: a few lines per transfer, whatever the report rate.
    let step: { name: string; printed: number } | null = null;
    return (line, ev) => {
      if (ev && ev.total > 0 && ev.unit === "bytes") {
        const quarter = ev.total / 4;
        if (step?.name === ev.step && ev.done < ev.total && ev.done - step.printed < quarter) return;
        step = ev.done >= ev.total ? null : { name: ev.step, printed: ev.done };
      }
      out.write(`${line}\n`);
    };
  }
  let open: { step: string; started: number } | null = null;
  const close = () => {
    if (open) out.write("\n");
    open = null;
  };
  return (line, ev) => {
    if (!ev || ev.total <= 0) {
      close();
      out.write(`${line}\n`);
      return;
    }
    if (open?.step !== ev.step) {
      close();
      open = { step: ev.step, started: now() };
    }
    out.write(`\r\u001b[2K${renderBar(ev, now() - open.started)}`);
    if (ev.done >= ev.total) close();
  };
}
