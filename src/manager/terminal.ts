/**
 * Plain rendering of terminal output for people and models: the bytes go through a real
 * headless terminal emulator (@xterm/headless: a complete VT parser, rather than regexes
 * that miss cases), and what it would show is returned as text. So colours and other
 * control sequences disappear, `\r` overwrites and backspaces are applied, cursor moves are
 * honoured, and a full-screen program (top, less, more) shows as its screen.
 *
 * The text is the emulator's active buffer: scrollback plus screen for normal output, the
 * screen alone while a full-screen program holds the alternate screen. Lines the terminal
 * wrapped are joined back into one line, trailing spaces are trimmed, trailing empty lines
 * dropped, and lines end with "\n" (never "\r\n").
 */
import xterm from "@xterm/headless";

// The package is CommonJS: its default export is the module object (works in the compiled pyro too).
const { Terminal } = xterm as unknown as typeof import("@xterm/headless");

/** Scrollback lines kept while rendering (one shell read is at most a few MiB of output). */
const SCROLLBACK = 100_000;

export async function renderPlain(output: string, cols: number, rows: number): Promise<string> {
  const term = new Terminal({ cols, rows, scrollback: SCROLLBACK, allowProposedApi: true });
  try {
    // Programs print "\n" and rely on the PTY to add "\r" (ONLCR); raw output may lack it.
    term.options.convertEol = false;
    await new Promise<void>((res) => term.write(output, res));
    const buf = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) {
      const line = buf.getLine(i);
      if (!line) continue;
      const text = line.translateToString(false);
      if (line.isWrapped && lines.length > 0) lines[lines.length - 1] += text;
      else lines.push(text);
    }
    while (lines.length > 0 && lines[lines.length - 1]?.trim() === "") lines.pop();
    return lines.map((l) => l.trimEnd()).join("\n") + (lines.length ? "\n" : "");
  } finally {
    term.dispose();
  }
}
