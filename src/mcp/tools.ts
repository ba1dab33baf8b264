/**
 * MCP tool definitions derived from the operations table (JSON Schema from the valibot schemas).
 * The MCP face sees each operation through a view: its input schema without the fields the
 * operation marks `mcpOmit` (CLI/SDK only), nor those its profile or mode leaves out
 * (src/mcp/modes.ts), and with the mode's description where it has one. The advertised JSON
 * Schema and the validation of calls come from the same narrowed schema (a strict object
 * refuses the omitted fields).
 * Tools whose text rendering is shaped for a model (TEXT_BUDGET_TOOLS, src/mcp/results.ts)
 * also take `text_budget_chars`, an MCP-only field the server removes before invoke (the
 * CLI and SDK never see it).
 */
import { toJsonSchema } from "@valibot/to-json-schema";
import * as v from "valibot";
import { OPERATIONS } from "../operations/index.ts";
import type { AnyOperation as Operation, Profile } from "../operations/types.ts";
import { MODES, type Mode, type ModeSpec, PROFILE_OMIT } from "./modes.ts";
import { TEXT_BUDGET_TOOLS, textBudgetField } from "./results.ts";

const views = new Map<string, Operation>();

/** The input schema's object (a piped schema is an object plus cross-field checks). */
function objectOf(op: Operation): { obj: any; checks: unknown[] } {
  const input = op.input as any;
  const [obj, ...checks] = input.pipe ?? [input];
  return { obj, checks };
}

/**
 * The operation as MCP sees it: `mcpOmit` fields and any of `omit` it has removed from its
 * input schema, and `description` (when given) in place of its own.
 */
export function mcpView(op: Operation, omit: readonly string[] = [], description?: string): Operation {
  const { obj, checks } = objectOf(op);
  const drop = [...new Set([...(op.mcpOmit ?? []), ...omit])].filter((f) => f in obj.entries).sort();
  const budget = TEXT_BUDGET_TOOLS.includes(op.name);
  if (drop.length === 0 && description === undefined && !budget) return op;
  const key = `${op.name}\0${drop.join(",")}\0${description ?? ""}`;
  let view = views.get(key);
  if (!view) {
    let input = op.input;
    if (drop.length || budget) {
      // A piped schema keeps its checks on the narrowed object.
      let narrowed: any = drop.length ? v.omit(obj, drop as [string, ...string[]]) : obj;
      if (budget) narrowed = v.strictObject({ ...narrowed.entries, text_budget_chars: textBudgetField });
      input = checks.length ? (v.pipe as any)(narrowed, ...checks) : narrowed;
    }
    view = { ...op, input, description: description ?? op.description };
    views.set(key, view);
  }
  return view;
}

/** The tools of a profile, or of a mode (which implies its profile), as the model sees them. */
export function toolsFor(profile: Profile, mode?: Mode): Operation[] {
  const inProfile = OPERATIONS.filter((op) => op.profiles.includes(profile));
  if (mode === undefined) return inProfile.map((op) => mcpView(op, PROFILE_OMIT[profile]));
  const spec: ModeSpec = MODES[mode];
  const omit = [...PROFILE_OMIT[spec.profile], ...(spec.omit ?? [])];
  return spec.tools.map((name) => {
    const op = inProfile.find((o) => o.name === name);
    if (!op) throw new Error(`mode ${mode} names ${name}, which is not a ${spec.profile} tool`);
    return mcpView(op, omit, spec.descriptions[name]?.trim());
  });
}

function jsonSchema(schema: v.GenericSchema, typeMode: "input" | "output"): Record<string, unknown> {
  const out = toJsonSchema(schema, { typeMode, errorMode: "ignore" }) as Record<string, unknown>;
  delete out.$schema;
  return out;
}

export function inputSchema(op: Operation): Record<string, unknown> {
  return jsonSchema(op.input, "input");
}

/**
 * The result's JSON Schema (clients validate structuredContent against it). A result that is
 * one of several objects (workspace_exec: attached result or detached exec) is published as
 * an object whose `anyOf` holds each shape, with every field any of them has listed in
 * `properties` (MCP requires `type: "object"` at the top).
 */
export function outputSchema(op: Operation): Record<string, unknown> {
  const out = jsonSchema(op.output, "output");
  const shapes = out.anyOf as Array<{ properties: Record<string, unknown> }> | undefined;
  if (!shapes) return out;
  const properties: Record<string, unknown> = {};
  for (const shape of shapes)
    for (const [k, schema] of Object.entries(shape.properties)) {
      const seen = properties[k];
      if (seen === undefined) properties[k] = schema;
      else if (JSON.stringify(seen) !== JSON.stringify(schema))
        properties[k] = { anyOf: [...((seen as any).anyOf ?? [seen]), schema] };
    }
  return { type: "object", properties, anyOf: shapes };
}

export function toolDefinition(op: Operation) {
  return {
    name: op.name,
    title: op.summary,
    description: op.description,
    inputSchema: inputSchema(op) as { type: "object"; [k: string]: unknown },
    outputSchema: outputSchema(op) as { type: "object"; [k: string]: unknown },
    annotations: { title: op.summary, ...op.annotations },
  };
}
