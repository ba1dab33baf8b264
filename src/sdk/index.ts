/**
 * The SDK: `import { Pyro } from "pyro"`. Every method is generated from the operations
 * table: its name is the operation's `sdk`, its leading arguments are the operation's
 * `sdkArgs` (the remaining input fields go in a trailing options object), and its result
 * type is inferred from the operation's output schema. Calls go through the same
 * `invoke()` as the CLI and MCP: input parsed, state checked, result validated.
 * Failures are always `PyroError` (with a stable `code`).
 */
import type * as v from "valibot";
import { enableConnectionPooling } from "../manager/client.ts";
import { makeCtx } from "../manager/context.ts";
import { pyroHome } from "../manager/paths.ts";
import { findOperation, invoke, OPERATIONS } from "../operations/index.ts";
import type { AnyOperation } from "../operations/types.ts";
import { PyroError, toPyroError } from "../protocol/errors.ts";

export type { ErrorCode } from "../protocol/errors.ts";
export { PyroError } from "../protocol/errors.ts";

type Ops = (typeof OPERATIONS)[number];
type InputOf<O extends AnyOperation> = v.InferInput<O["input"]>;
/** Leading positional arguments: an optional field makes its argument optional. */
type Args<I, A extends readonly unknown[]> = A extends readonly [infer H extends keyof I, ...infer R]
  ? undefined extends I[H]
    ? [H?: I[H], ...Args<I, R>]
    : [I[H], ...Args<I, R>]
  : [];
type Rest<I, A extends readonly unknown[]> = Omit<I, A[number] & keyof I>;
/** The trailing options object: optional when every remaining field is. */
type Options<R> = keyof R extends never ? [] : Record<string, never> extends R ? [opts?: R] : [opts: R];
type SdkArgs<O extends AnyOperation> =
  NonNullable<O["sdkArgs"]> extends readonly string[] ? NonNullable<O["sdkArgs"]> : readonly [];
type Plain<O extends AnyOperation> = (
  ...args: [...Args<InputOf<O>, SdkArgs<O>>, ...Options<Rest<InputOf<O>, SdkArgs<O>>>]
) => Promise<v.InferOutput<O["output"]>>;
/**
 * An operation whose result is either a detached exec (`exec_id`) or something else
 * (workspace_exec) gets two signatures: with `detach: true` it resolves to the detached
 * exec, otherwise to the other result.
 */
type DetachedOf<R> = Extract<R, { exec_id: string }>;
type AttachedOf<R> = Exclude<R, { exec_id: string }>;
type Method<O extends AnyOperation, R = v.InferOutput<O["output"]>> = [DetachedOf<R>] extends [never]
  ? Plain<O>
  : [AttachedOf<R>] extends [never]
    ? Plain<O>
    : ((
        ...args: [...Args<InputOf<O>, SdkArgs<O>>, opts: Rest<InputOf<O>, SdkArgs<O>> & { detach: true }]
      ) => Promise<DetachedOf<R>>) &
        ((
          ...args: [
            ...Args<InputOf<O>, SdkArgs<O>>,
            ...Options<Rest<InputOf<O>, SdkArgs<O>> & { detach?: false }>,
          ]
        ) => Promise<AttachedOf<R>>);

/** One method per operation, named by its `sdk` field. */
export type PyroMethods = { [O in Ops as O["sdk"]]: Method<O> };
/** Result type of the operation an SDK method runs: `Result<"execWorkspace">`. */
export type Result<M extends keyof PyroMethods> = Awaited<ReturnType<PyroMethods[M]>>;

export interface PyroOptions {
  /** State directory (default $PYRO_HOME or $XDG_DATA_HOME/pyro). */
  home?: string;
  env?: Record<string, string | undefined>;
  /** Progress lines (environment builds, boots); default: ignored. */
  onProgress?: (line: string) => void;
}

export interface Pyro extends PyroMethods {}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the methods are generated from OPERATIONS and merged in by this interface
export class Pyro {
  readonly home: string;
  private readonly env: Record<string, string | undefined>;
  private readonly onProgress: (line: string) => void;

  constructor(opts: PyroOptions = {}) {
    this.env = { ...(opts.env ?? process.env) };
    if (opts.home) this.env.PYRO_HOME = opts.home;
    this.home = pyroHome(this.env);
    this.onProgress = opts.onProgress ?? (() => {});
    // A long-lived client: keep one supervisor connection per workspace (warm round trips).
    enableConnectionPooling();
  }

  /** Run any operation by its MCP tool name with snake_case input (what the typed methods use). */
  async call(tool: string, input: object = {}): Promise<Record<string, unknown>> {
    const op = findOperation(tool);
    if (!op) throw new PyroError("INVALID_INPUT", `unknown operation "${tool}"`);
    try {
      return await invoke(op, makeCtx(this.env, this.onProgress), input);
    } catch (err) {
      throw toPyroError(err);
    }
  }

  /**
   * An MCP server over the same operations, for embedding (connect it to any transport):
   * `profile` or `mode` (a mode implies its profile), host `roots`, `exportDir`, and
   * `project` (`{ path }` of a git checkout, or `{ repo_url, repo_ref? }` cloned under the
   * pyro home) whose tracked files seed workspace_create when seed_path is absent.
   */
  async createServer(
    opts: Omit<import("../mcp/server.ts").ServerOptions, "env" | "project"> & {
      project?: import("../manager/project.ts").ProjectSource;
    } = {},
  ) {
    const { createServer } = await import("../mcp/server.ts");
    const { resolveProject } = await import("../manager/project.ts");
    const project = opts.project ? await resolveProject(this.home, opts.project) : null;
    return createServer({ ...opts, project, env: this.env });
  }
}

/** Build a method's input from its positional arguments and trailing options. */
function inputFrom(op: AnyOperation, args: unknown[]): Record<string, unknown> {
  const names = (op.sdkArgs ?? []) as readonly string[];
  const opts = args.length > names.length ? args[names.length] : undefined;
  if (opts !== undefined && (typeof opts !== "object" || opts === null || Array.isArray(opts)))
    throw new PyroError("INVALID_INPUT", `${op.sdk}: the options argument must be an object`);
  const input: Record<string, unknown> = { ...(opts as Record<string, unknown> | undefined) };
  names.forEach((name, i) => {
    if (args[i] !== undefined) input[name] = args[i];
  });
  return input;
}

for (const op of OPERATIONS as readonly AnyOperation[]) {
  Object.defineProperty(Pyro.prototype, op.sdk, {
    value: async function (this: Pyro, ...args: unknown[]) {
      return this.call(op.name, inputFrom(op, args));
    },
    writable: true,
    configurable: true,
  });
}
