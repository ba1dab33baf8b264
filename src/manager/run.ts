/**
 * One-shot `run`: boot a throwaway machine in this process, exec once, tear everything
 * down (even on Ctrl-C or failure) and return the exec result.
 */

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ensureEnvironment } from "../env/prepare.ts";
import { PyroError } from "../protocol/errors.ts";
import { chooseBackend, loadBackend } from "../vmm/select.ts";
import { bootTimeoutMs } from "./boot.ts";
import type { Ctx } from "./context.ts";
import { type ExecResult, execOn } from "./exec.ts";
import { randomHex } from "./ids.ts";
import { startMachine } from "./machine.ts";
import { runsDir } from "./paths.ts";
import { Teardown } from "./teardown.ts";

export interface RunInput {
  environment: string;
  command: string | string[];
  vcpu_count?: number;
  mem_mib?: number;
  timeout_seconds?: number;
  network?: boolean;
  allow_host_compat?: boolean;
  max_output_bytes?: number;
}

export async function runOnce(ctx: Ctx, input: RunInput): Promise<ExecResult> {
  const installed = await ensureEnvironment(ctx, input.environment, {
    allowMissing: input.allow_host_compat ?? false,
  });
  const choice = await chooseBackend({
    home: ctx.home,
    env: ctx.env,
    allowHostCompat: input.allow_host_compat ?? false,
    kernelPath: installed ? join(installed.dir, installed.manifest.kernel.file) : null,
  });
  const backend = await loadBackend(choice);
  const id = `run_${randomHex(6)}`;
  const dir = join(runsDir(ctx.home), id);
  const td = new Teardown();
  const onSignal = () => {
    void td.run().then(() => process.exit(130));
  };
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    td.push("run dir", () => rmSync(dir, { recursive: true, force: true }));
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    const { artifactsOf } = await import("../env/store.ts");
    const machine = await startMachine(backend, {
      workspaceId: id,
      runDir: dir,
      workspaceDir: join(dir, "workspace"),
      environment: choice.name === "host" || !installed ? null : artifactsOf(installed),
      vcpuCount: input.vcpu_count ?? 1,
      memMib: input.mem_mib ?? 1024,
      network: input.network ?? false,
      consoleLogPath: join(dir, "console.log"),
      bootTimeoutMs: bootTimeoutMs(ctx.env),
    });
    td.push("machine", () => machine.shutdown());
    return await execOn(
      machine.conn,
      {
        command: input.command,
        timeout_seconds: input.timeout_seconds,
        max_output_bytes: input.max_output_bytes,
      },
      { backend: machine.handle.backend, accelerator: machine.handle.accelerator },
      ctx.live,
    );
  } catch (err) {
    if (err instanceof PyroError) throw err;
    throw err;
  } finally {
    await td.run();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
