/**
 * MCP tool definitions derived from the operations table (JSON Schema from the valibot schemas).
 * The MCP face sees each operation through `mcpView`: its input schema without the fields
 * the operation marks `mcpOmit` (CLI/SDK only), so the advertised JSON Schema and the
 * validation of calls come from the same narrowed schema (a strict object refuses them).
 */
import { toJsonSchema } from "@valibot/to-json-schema";
import * as v from "valibot";
import { OPERATIONS } from "../operations/index.ts";
import type { AnyOperation as Operation, Profile } from "../operations/types.ts";

const views = new WeakMap<Operation, Operation>();

/** The operation as MCP sees it: `mcpOmit` fields removed from its input schema. */
export function mcpView(op: Operation): Operation {
  if (!op.mcpOmit?.length) return op;
  let view = views.get(op);
  if (!view) {
    // A piped schema (object + cross-field checks) keeps its checks on the narrowed object.
    const input = op.input as any;
    const [obj, ...checks] = input.pipe ?? [input];
    const narrowed: any = v.omit(obj, op.mcpOmit as [string, ...string[]]);
    view = { ...op, input: checks.length ? (v.pipe as any)(narrowed, ...checks) : narrowed };
    views.set(op, view);
  }
  return view;
}

export function toolsFor(profile: Profile): Operation[] {
  return OPERATIONS.filter((op) => op.profiles.includes(profile)).map(mcpView);
}

function jsonSchema(schema: v.GenericSchema, typeMode: "input" | "output"): Record<string, unknown> {
  const out = toJsonSchema(schema, { typeMode, errorMode: "ignore" }) as Record<string, unknown>;
  delete out.$schema;
  return out;
}

export function inputSchema(op: Operation): Record<string, unknown> {
  return jsonSchema(op.input, "input");
}

/** The result's JSON Schema (clients validate structuredContent against it). */
export function outputSchema(op: Operation): Record<string, unknown> {
  return jsonSchema(op.output, "output");
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
