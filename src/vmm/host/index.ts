/**
 * The `host` backend: no VM at all. The agent runs as a child process with the workspace
 * directory as its root. No isolation; only ever used when the user opts in.
 */
import { closeSync, mkdirSync, openSync } from "node:fs";
import { dirname, join } from "node:path";
import { streamChannel } from "../../protocol/channels.ts";
import { PyroError } from "../../protocol/errors.ts";
import { agentCommand } from "../agent-path.ts";
import { pdeathsigPrefix, stopProcess } from "../process.ts";
import type { Backend, BootSpec, VmHandle } from "../types.ts";

export const hostBackend: Backend = {
  name: "host",
  async boot(spec: BootSpec): Promise<VmHandle> {
    mkdirSync(spec.workspaceDir, { recursive: true });
    const logFd = openSync(spec.consoleLogPath, "a", 0o600);
    const cmd = spec.agentPath ? [spec.agentPath] : agentCommand();
    let proc: ReturnType<typeof Bun.spawn>;
    try {
      // The agent's own state (the diff baseline) lives beside /workspace, never inside it.
      const stateDir = join(dirname(spec.workspaceDir), "agent-state");
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      // TERM, not KILL: the agent must get the chance to kill the process groups it started.
      proc = Bun.spawn(
        [
          ...pdeathsigPrefix("TERM"),
          ...cmd,
          "serve",
          "--stdio",
          "--root",
          spec.workspaceDir,
          "--state",
          stateDir,
        ],
        {
          stdin: "pipe",
          stdout: "pipe",
          stderr: logFd,
          cwd: spec.workspaceDir,
          env: {
            PATH: process.env.PATH ?? "/usr/bin:/bin",
            LANG: process.env.LANG ?? "C.UTF-8",
            // The agent process itself must not write into /workspace (bun run from source caches
            // transpiled files under $HOME): its HOME is its state dir; commands get HOME from the agent.
            HOME: stateDir,
            BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0",
          },
        },
      );
    } catch (err) {
      throw new PyroError("VMM_FAILED", `cannot start the host agent: ${(err as Error).message}`);
    } finally {
      closeSync(logFd);
    }
    let connected = false;
    const exited = proc.exited.then((code) => (proc.signalCode ? null : code));
    return {
      backend: "host",
      accelerator: null,
      pid: proc.pid,
      exited,
      async connect() {
        if (connected) throw new PyroError("INTERNAL", "host agent channel already taken");
        connected = true;
        const stdin = proc.stdin as import("bun").FileSink;
        return streamChannel(proc.stdout as ReadableStream<Uint8Array>, stdin);
      },
      async stop(timeoutMs: number) {
        await stopProcess(proc, exited, timeoutMs, () => {
          proc.kill("SIGTERM");
          proc.kill("SIGCONT"); // a stopped (SIGSTOP) agent must run to act on TERM
        });
      },
      kill() {
        proc.kill("SIGKILL");
      },
    };
  },
};
