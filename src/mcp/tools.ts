/** MCP tool definitions derived from the operations table (JSON Schema from the valibot schemas). */
import { toJsonSchema } from "@valibot/to-json-schema";
import { OPERATIONS } from "../operations/index.ts";
import type { Operation, Profile } from "../operations/types.ts";

export function toolsFor(profile: Profile): Operation[] {
  return OPERATIONS.filter((op) => op.profiles.includes(profile));
}

export function inputSchema(op: Operation): Record<string, unknown> {
  const schema = toJsonSchema(op.input, { typeMode: "input", errorMode: "ignore" }) as Record<
    string,
    unknown
  >;
  delete schema.$schema;
  return schema;
}

export function toolDefinition(op: Operation) {
  return {
    name: op.name,
    title: op.summary,
    description: op.description,
    inputSchema: inputSchema(op) as { type: "object"; [k: string]: unknown },
    annotations: { title: op.summary, ...op.annotations },
  };
}
