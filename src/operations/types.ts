/**
 * The spine: every public capability is one Operation. The CLI command, the SDK method
 * and the MCP tool are all derived from this record, never written by hand.
 *
 * Invariants:
 * - `input` and `output` are valibot schemas; `invoke()` (src/operations/invoke.ts) parses
 *   every input and checks every result against `output` for all three faces, so a result
 *   that drifts from its schema is an error in the test suites, never a silent change.
 * - `run` returns plain data; the faces render it (CLI `render`/`exitCode`, MCP text).
 * - Per-face extras (`cliFlags`, `mcpOmit`, `hostPaths`, `sdkArgs`) live here too, so adding
 *   an operation touches its operation file and its manager function, nothing else.
 */
import type * as v from "valibot";
import type { Ctx } from "../manager/context.ts";

export type Profile = "vm-run" | "workspace-core" | "workspace-full";

/** How an operation uses a host path given in its input: reads it, or creates it. */
export type HostPathUse = "read" | "write";

/** Workspace states an operation accepts (checked by invoke before `run`). */
export type WorkspaceState = "created" | "started" | "stopped" | "paused";

export type ObjectSchema = v.GenericSchema<any, Record<string, unknown>>;

export interface Operation<
  IS extends ObjectSchema = ObjectSchema,
  OS extends ObjectSchema = ObjectSchema,
  N extends string = string,
  S extends string = string,
  A extends readonly string[] = readonly string[],
> {
  /** MCP tool name, snake_case (`workspace_exec`) */
  name: N;
  /** SDK method name (`execWorkspace`) */
  sdk: S;
  /**
   * SDK: input fields taken as leading positional arguments, in order; the other fields
   * go in a trailing options object (`execWorkspace(id, command, { timeout_seconds })`).
   * None: the method takes the whole input object.
   */
  sdkArgs?: A;
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
  input: IS;
  /** the result's shape (src/operations/outputs.ts): checked on every call, MCP outputSchema */
  output: OS;
  /**
   * Whether a successful call changes the workspace it names (`workspace_id`): invoke then
   * bumps its `last_activity_at`, so `workspace list` orders by real activity.
   */
  mutates: boolean;
  /** Workspace states this operation accepts (absent: any state). */
  states?: readonly WorkspaceState[];
  annotations: {
    readOnlyHint: boolean;
    destructiveHint: boolean;
    idempotentHint: boolean;
    openWorldHint?: boolean;
  };
  /** MCP profiles that include this tool (none: CLI/SDK only, and `notOverMcp` says why) */
  profiles: Profile[];
  /** Why a model may not call this operation (required when `profiles` is empty). */
  notOverMcp?: string;
  /**
   * Input fields that name host paths, and how they are used. The CLI and SDK (the user)
   * have full host access; over MCP each one is confined to the granted roots
   * (src/mcp/host-paths.ts). Every host-path field of an MCP tool must be declared here
   * or in mcpOmit (test/mcp-hostile.test.ts checks the descriptions).
   */
  hostPaths?: Partial<Record<keyof v.InferOutput<IS> & string, HostPathUse>>;
  /**
   * Input fields that exist for the CLI and SDK only (e.g. a host file to read content
   * from): the MCP tool's JSON Schema omits them and its validation refuses them.
   */
  mcpOmit?: (keyof v.InferOutput<IS> & string)[];
  /**
   * Input fields the CLI spells another way (a structured MCP/SDK field whose CLI form is a
   * set of flags, e.g. service_start's `readiness` as --ready-*): no CLI flag is made for them.
   */
  cliOmit?: (keyof v.InferOutput<IS> & string)[];
  /** CLI-only boolean flags that change how the result is printed (`--id-only`). */
  cliFlags?: Record<string, { description: string; print(out: v.InferOutput<OS>): string | Uint8Array }>;
  /** CLI examples for --help */
  examples?: string[];
  /** Does the work; its result is checked against `output` by invoke. */
  run(ctx: Ctx, input: v.InferOutput<IS>): Promise<object>;
  /** human rendering for the CLI (default: key: value lines) */
  render?(out: v.InferOutput<OS>): string;
  /** CLI exit code taken from the result (run/exec exit with the command's own code) */
  exitCode?(out: v.InferOutput<OS>): number;
  /** CLI only: stream command output live instead of printing it after */
  streamsOutput?: boolean;
}

/** Any operation, whatever its schemas (what the faces iterate over). */
export type AnyOperation = Operation<any, any, string, string, readonly string[]>;

export function defineOperation<
  IS extends ObjectSchema,
  OS extends ObjectSchema,
  const N extends string,
  const S extends string,
  const A extends readonly string[] = readonly [],
>(op: Operation<IS, OS, N, S, A>): Operation<IS, OS, N, S, A> {
  return op;
}
