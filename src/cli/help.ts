/**
 * `--help` text for every command, rendered from the same citty definitions the parser uses
 * (so the flags shown are the flags accepted). Pure: `formatHelp` takes the command's path
 * and definition and a width, and returns plain text.
 *
 * Layout decisions (citty's own renderUsage right-aligned the flag column and padded every
 * row to the longest description: 730-column lines that a terminal wraps into blank rows):
 * - the first line names the whole command path (`pyro workspace exec`), then its summary;
 * - flags are left-aligned; descriptions wrap at the width with a hanging indent; a flag
 *   longer than the column gets its description on the next line;
 * - width: the terminal's columns when stdout is a terminal, else 100 (pipes, files, a chat
 *   model reading the output); never below 60;
 * - headings stay USAGE / ARGUMENTS / OPTIONS / COMMANDS / EXAMPLES; example lines are never
 *   wrapped (they are meant to be copied).
 */

interface ArgLike {
  type?: string;
  description?: string;
  required?: boolean;
  valueHint?: string;
}
interface CommandLike {
  meta?: unknown;
  args?: unknown;
  subCommands?: unknown;
}

export interface HelpInput {
  /** full command path, e.g. ["pyro", "workspace", "exec"] */
  path: string[];
  cmd: CommandLike;
  /** the operation takes a command after `--` (e.g. "COMMAND...") */
  rest?: string;
  /** a longer description printed after the options */
  description?: string;
  examples?: string[];
}

/** Names longer than this get their description on the next line. */
const NAME_COLUMN_MAX = 26;

/** Wrap `text` to `width` columns; continuation lines get `indent` spaces. */
export function wrap(text: string, width: number, indent = 0): string {
  const out: string[] = [];
  for (const para of text.split("\n")) {
    let line = "";
    for (const word of para.split(/ +/)) {
      if (!word) continue;
      const room = width - (out.length || line ? indent : 0);
      if (line && line.length + 1 + word.length > room) {
        out.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    out.push(line);
  }
  return out.map((l, i) => (i === 0 ? l : `${" ".repeat(indent)}${l}`)).join("\n");
}

/** Two columns: names left, descriptions wrapped beside them (or below a long name). */
function table(rows: [string, string][], width: number): string {
  const col = Math.max(0, ...rows.map(([n]) => n.length).filter((n) => n <= NAME_COLUMN_MAX)) + 4;
  return rows
    .map(([name, desc]) => {
      const text = wrap(desc, width, col);
      if (name.length + 4 <= col) return `  ${name.padEnd(col - 2)}${text}`;
      return `  ${name}\n${" ".repeat(col)}${text}`;
    })
    .join("\n");
}

function meta(cmd: CommandLike): { name?: string; description?: string; version?: string } {
  return (cmd.meta ?? {}) as { name?: string; description?: string; version?: string };
}

export function formatHelp(h: HelpInput, width: number): string {
  const w = Math.max(60, width);
  const m = meta(h.cmd);
  const name = h.path.join(" ");
  const args = Object.entries((h.cmd.args ?? {}) as Record<string, ArgLike>);
  const positionals = args.filter(([, a]) => a.type === "positional");
  const options = args.filter(([, a]) => a.type !== "positional");
  const subs = Object.entries((h.cmd.subCommands ?? {}) as Record<string, CommandLike>);

  const title = `${name}${m.version ? ` ${m.version}` : ""}`;
  const parts: string[] = [wrap(`${title}: ${m.description ?? ""}`, w, 2)];

  const usage = [name];
  if (subs.length) usage.push("<command>");
  if (options.length) usage.push("[OPTIONS]");
  for (const [k, a] of positionals) usage.push(a.required ? k.toUpperCase() : `[${k.toUpperCase()}]`);
  if (h.rest) usage.push(`-- ${h.rest}`);
  parts.push(`USAGE\n  ${wrap(usage.join(" "), w - 2, 4)}`);

  if (subs.length)
    parts.push(
      `COMMANDS\n${table(
        subs.map(([k, c]) => [k, meta(c).description ?? ""]),
        w,
      )}`,
    );
  if (positionals.length)
    parts.push(
      `ARGUMENTS\n${table(
        positionals.map(([k, a]) => [k.toUpperCase(), a.description ?? ""]),
        w,
      )}`,
    );
  if (options.length)
    parts.push(
      `OPTIONS\n${table(
        options.map(([k, a]) => [
          a.type === "boolean" ? `--${k}` : `--${k}=<${a.valueHint ?? k.replace(/-/g, "_")}>`,
          a.description ?? "",
        ]),
        w,
      )}`,
    );
  if (h.description) parts.push(wrap(h.description, w));
  if (h.examples?.length) parts.push(`EXAMPLES\n${h.examples.map((e) => `  ${e}`).join("\n")}`);
  if (subs.length) parts.push(`Run \`${name} <command> --help\` for a command's options.`);
  return `${parts.join("\n\n")}\n`;
}

/** The width help is wrapped to (see the header). */
export function helpWidth(stream: { isTTY?: boolean; columns?: number } = process.stdout): number {
  return stream.isTTY && stream.columns ? stream.columns : 100;
}
