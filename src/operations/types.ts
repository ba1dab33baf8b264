/**
 * The spine: every public capability is one Operation. The CLI command, the SDK method
 * and the MCP tool are all derived from this record, never written by hand.
 */
import type * as v from "valibot";
import type { Ctx } from "../manager/context.ts";

export type Profile = "vm-run" | "workspace-core" | "workspace-full";

/** How an operation uses a host path given in its input: reads it, or creates it. */
export type HostPathUse = "read" | "write";

export interface Operation<I extends Record<string, unknown> = any, O extends Record<string, unknown> = any> {
  /** MCP tool name, snake_case (`workspace_exec`) */
  name: string;
  /** SDK method name (`execWorkspace`) */
  sdk: string;
  /** CLI path (`["workspace", "exec"]`) */
  cli: string[];
  /** input fields taken positionally by the CLI, in order */
  positionals?: string[];
  /** input field filled with the argv after `--` (CLI) */
  rest?: string;
  /** one line for --help and the tool list */
  summary: string;
  /** the long description the model reads */
  description: string;
  input: v.GenericSchema<unknown, I>;
  annotations: {
    readOnlyHint: boolean;
    destructiveHint: boolean;
    idempotentHint: boolean;
    openWorldHint?: boolean;
  };
  /** MCP profiles that include this tool (none: CLI/SDK only) */
  profiles: Profile[];
  /**
   * Input fields that name host paths, and how they are used. The CLI and SDK (the user)
   * have full host access; over MCP each one is confined to the granted roots
   * (src/mcp/host-paths.ts). Every host-path field of an MCP tool must be declared here
   * or in mcpOmit (test/mcp-hostile.test.ts checks the descriptions).
   */
  hostPaths?: Partial<Record<keyof I & string, HostPathUse>>;
  /**
   * Input fields that exist for the CLI and SDK only (e.g. a host file to read content
   * from): the MCP tool's JSON Schema omits them and its validation refuses them.
   */
  mcpOmit?: (keyof I & string)[];
  /** CLI examples for --help */
  examples?: string[];
  run(ctx: Ctx, input: I): Promise<O>;
  /** human rendering for the CLI (default: key: value lines) */
  render?(out: O): string;
  /** CLI exit code taken from the result (run/exec exit with the command's own code) */
  exitCode?(out: O): number;
  /** CLI only: stream command output live instead of printing it after */
  streamsOutput?: boolean;
}

export function defineOperation<I extends Record<string, unknown>, O extends Record<string, unknown>>(
  op: Operation<I, O>,
): Operation<I, O> {
  return op;
}
