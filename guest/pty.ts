/**
 * PTYs in the guest come from Bun's built-in Bun.Terminal: no native library to ship or
 * extract, and it works inside the compiled agent from any directory (see selftestPty).
 */

export interface PtyResult {
  output: string;
  exitCode: number | null;
}

/** Run argv on a fresh PTY and collect everything it prints (used by the self test; shells build on it). */
export async function runInPty(
  argv: string[],
  opts: { cols?: number; rows?: number; cwd?: string } = {},
): Promise<PtyResult> {
  const chunks: Uint8Array[] = [];
  const TerminalCtor = (Bun as unknown as { Terminal: new (o: unknown) => { close(): void } }).Terminal;
  const term = new TerminalCtor({
    cols: opts.cols ?? 120,
    rows: opts.rows ?? 30,
    data(_t: unknown, d: Uint8Array) {
      chunks.push(d.slice());
    },
  });
  try {
    const proc = Bun.spawn(argv, { terminal: term, cwd: opts.cwd } as Parameters<typeof Bun.spawn>[1]);
    const exitCode = await proc.exited;
    await Bun.sleep(20); // let the last bytes drain from the PTY
    return { output: Buffer.concat(chunks).toString("utf8"), exitCode };
  } finally {
    term.close();
  }
}

/** `pyro-agent --selftest-pty`: proves the PTY works in this very executable. */
export async function selftestPty(): Promise<boolean> {
  const r = await runInPty(["/bin/sh", "-c", "tty; stty size"], { cols: 77, rows: 19 });
  const ok = r.exitCode === 0 && /\/dev\/pts\/\d+/.test(r.output) && r.output.includes("19 77");
  process.stdout.write(`${JSON.stringify({ ok, output: r.output })}\n`);
  return ok;
}
