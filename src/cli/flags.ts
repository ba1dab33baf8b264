/**
 * CLI flags derived from an operation's valibot input schema: snake_case fields become
 * --kebab-case flags; records take repeated K=V; arrays take repeated values. Parsing is
 * strict: an unknown flag is a usage error, not silently ignored.
 */
import { parseArgs } from "node:util";
import * as v from "valibot";
import type { AnyOperation as Operation } from "../operations/types.ts";
import { PyroError } from "../protocol/errors.ts";

export type FieldKind = "string" | "number" | "boolean" | "record" | "array" | "command";

export interface FlagSpec {
  field: string;
  flag: string;
  kind: FieldKind;
  description: string;
  required: boolean;
  /** an array field fed by several flags: turns one flag value into one array item */
  item?: (raw: string) => unknown;
}

/** Singular flag names where the contract spells them so (--label K=V). */
const FLAG_NAMES: Record<string, string> = {
  labels: "label",
  clear_labels: "clear-label",
  signal_name: "signal",
  allow_hosts: "allow-host",
  allow_cidrs: "allow-cidr",
};

/** Array fields that several flags fill, each item built from NAME=... (secrets). */
const SPLIT_FLAGS: Record<string, Array<Pick<FlagSpec, "flag" | "description" | "item">>> = {
  secrets: [
    {
      flag: "secret",
      description:
        "A secret NAME=VALUE for commands of this workspace (visible in the host's process list while pyro runs: prefer --secret-file).",
      item: (raw) => splitNamed("secret", "NAME=VALUE", raw, "value"),
    },
    {
      flag: "secret-file",
      description:
        "A secret NAME=PATH whose value is read from this host file (one trailing newline dropped).",
      item: (raw) => splitNamed("secret-file", "NAME=PATH", raw, "file_path"),
    },
  ],
};

/** `NAME=rest` → {name, [key]: rest}; the error never repeats what was given (it may be a secret). */
function splitNamed(flag: string, shape: string, raw: string, key: string): Record<string, string> {
  const eq = raw.indexOf("=");
  if (eq <= 0) throw new PyroError("INVALID_INPUT", `--${flag} takes ${shape}`);
  return { name: raw.slice(0, eq), [key]: raw.slice(eq + 1) };
}

/** Record fields whose flag may give a key alone, meaning KEY=KEY (--secret-env NAME). */
const KEY_ALONE = new Set(["secret_env"]);

function inner(schema: any): { schema: any; optional: boolean } {
  let s = schema;
  let optional = false;
  while (s && (s.type === "optional" || s.type === "nullable" || s.type === "nullish")) {
    optional = true;
    s = s.wrapped;
  }
  return { schema: s, optional };
}

function kindOf(schema: any): FieldKind {
  switch (schema?.type) {
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "record":
      return "record";
    case "array":
      return "array";
    case "union":
      return "command";
    default:
      return "string";
  }
}

export function flagSpecs(op: Operation): FlagSpec[] {
  const entries = (op.input as any).entries as Record<string, any>;
  const omit = new Set<string>(op.cliOmit ?? []);
  const fields = Object.entries(entries ?? {}).filter(([field]) => !omit.has(field));
  return fields.flatMap(([field, schema]): FlagSpec[] => {
    const { schema: s, optional } = inner(schema);
    const split = SPLIT_FLAGS[field];
    if (split) return split.map((x) => ({ ...x, field, kind: "array", required: false }));
    return [
      {
        field,
        flag: FLAG_NAMES[field] ?? field.replaceAll("_", "-"),
        kind: kindOf(s),
        description: v.getDescription(schema) ?? v.getDescription(s) ?? "",
        required: !optional,
      },
    ];
  });
}

/** Flags every command takes that are not part of the operation input. */
export const GLOBAL_FLAGS = {
  json: { type: "boolean" as const },
  help: { type: "boolean" as const, short: "h" },
};

export interface ParsedCli {
  input: Record<string, unknown>;
  json: boolean;
  extra: Record<string, unknown>;
}

export function parseCli(
  op: Operation,
  argv: string[],
  extraFlags: Record<string, { type: "boolean" | "string" }> = {},
): ParsedCli {
  const specs = flagSpecs(op);
  const dd = argv.indexOf("--");
  const before = dd >= 0 ? argv.slice(0, dd) : argv;
  const after = dd >= 0 ? argv.slice(dd + 1) : [];
  const options: Record<string, { type: "boolean" | "string"; multiple?: boolean; short?: string }> = {
    ...GLOBAL_FLAGS,
    ...extraFlags,
  };
  const positionals = op.positionals ?? [];
  for (const s of specs) {
    if (positionals.includes(s.field) || s.field === op.rest) continue;
    options[s.flag] = {
      type: s.kind === "boolean" ? "boolean" : "string",
      multiple: s.kind === "record" || s.kind === "array",
      // `-o FILE` for every --output (env save, workspace export, disk export, print-config)
      ...(s.flag === "output" ? { short: "o" } : {}),
    };
  }
  // A string flag always takes the next word as its value, even one starting with "-"
  // (a patch text begins with "--- a/..."): join them so parseArgs does not call it ambiguous.
  const joined: string[] = [];
  for (let i = 0; i < before.length; i++) {
    const a = before[i] as string;
    const name = a.startsWith("--") ? a.slice(2) : null;
    if (name && !name.includes("=") && options[name]?.type === "string" && i + 1 < before.length) {
      joined.push(`${a}=${before[i + 1]}`);
      i++;
    } else joined.push(a);
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: joined, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new PyroError(
      "INVALID_INPUT",
      (err as Error).message.replace(/\. To specify a positional.*$/s, ""),
    );
  }
  const input: Record<string, unknown> = {};
  const pos = [...parsed.positionals];
  for (const field of positionals) {
    const val = pos.shift();
    if (val !== undefined) input[field] = val;
  }
  if (pos.length > 0)
    throw new PyroError(
      "INVALID_INPUT",
      `unexpected argument "${pos[0]}"${op.rest ? " (put the command after --)" : ""}`,
    );
  if (op.rest) {
    if (after.length > 0) input[op.rest] = after;
  } else if (dd >= 0) {
    throw new PyroError("INVALID_INPUT", "this command takes no arguments after --");
  }
  for (const s of specs) {
    const raw = parsed.values[s.flag];
    if (raw === undefined) continue;
    switch (s.kind) {
      case "boolean":
        input[s.field] = raw;
        break;
      case "number": {
        const n = Number(raw);
        if (raw === "" || !Number.isFinite(n))
          throw new PyroError("INVALID_INPUT", `--${s.flag} takes a number (got "${raw}")`);
        input[s.field] = n;
        break;
      }
      case "record": {
        const rec: Record<string, string> = {};
        for (const item of raw as string[]) {
          const eq = item.indexOf("=");
          if (eq < 0 && KEY_ALONE.has(s.field) && item !== "") {
            rec[item] = item;
            continue;
          }
          if (eq <= 0) throw new PyroError("INVALID_INPUT", `--${s.flag} takes KEY=VALUE (got "${item}")`);
          rec[item.slice(0, eq)] = item.slice(eq + 1);
        }
        input[s.field] = rec;
        break;
      }
      case "array":
        input[s.field] = s.item
          ? [...((input[s.field] as unknown[]) ?? []), ...(raw as string[]).map(s.item)]
          : raw;
        break;
      default:
        input[s.field] = raw;
    }
  }
  const extra: Record<string, unknown> = {};
  for (const k of Object.keys(extraFlags)) if (parsed.values[k] !== undefined) extra[k] = parsed.values[k];
  return { input, json: Boolean(parsed.values.json), extra };
}
