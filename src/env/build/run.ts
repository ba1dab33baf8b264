/**
 * Child processes for the build steps: argv arrays only (no shell), output streamed line by
 * line to the caller's progress callback, and the last lines kept so a failure says why.
 * Each step dies with the build (`setpriv --pdeathsig KILL`): a build killed outright does
 * not leave `make -j` compiling into a scratch tree the next build removes.
 */
import { PyroError } from "../../protocol/errors.ts";
import { pdeathsigPrefix } from "../../vmm/process.ts";

export type Progress = (line: string) => void;

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  onProgress?: Progress;
  /** Collect stdout and return it (for small outputs such as `du` or `dpkg-query`). */
  capture?: boolean;
}

const TAIL_LINES = 40;

export async function run(argv: string[], opts: RunOptions = {}): Promise<string> {
  const tail: string[] = [];
  let captured = "";
  const note = (line: string) => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    opts.onProgress?.(line);
  };
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn([...pdeathsigPrefix("KILL"), ...argv], {
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : undefined,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
  } catch (cause) {
    throw new PyroError("ENVIRONMENT_BUILD_FAILED", `cannot start ${argv[0]}: ${String(cause)}`, {
      details: { argv },
      cause,
    });
  }
  const pump = async (stream: ReadableStream<Uint8Array>, keep: boolean) => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      if (keep) captured += text;
      pending += text;
      let nl = pending.indexOf("\n");
      while (nl >= 0) {
        note(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
        nl = pending.indexOf("\n");
      }
    }
    if (pending) note(pending);
  };
  await Promise.all([
    pump(proc.stdout as ReadableStream<Uint8Array>, opts.capture === true),
    pump(proc.stderr as ReadableStream<Uint8Array>, false),
  ]);
  const code = await proc.exited;
  if (code !== 0) {
    throw new PyroError("ENVIRONMENT_BUILD_FAILED", `${argv.slice(0, 3).join(" ")} exited with ${code}`, {
      details: { argv, exitCode: code, tail: tail.join("\n") },
    });
  }
  return captured;
}
