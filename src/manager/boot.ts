/** From a workspace record to a backend + boot spec (used by the supervisor at start). */
import { existsSync, mkdirSync } from "node:fs";
import { artifactsOf, findInstalled, verifyEnvironment } from "../env/store.ts";
import { PyroError } from "../protocol/errors.ts";
import { loadBackend } from "../vmm/select.ts";
import type { Backend, BootSpec } from "../vmm/types.ts";
import { consoleLogPath, dataDiskPath, hostRootDir, logsDir, runDir } from "./paths.ts";
import { verifyPausedState } from "./paused-state.ts";
import type { WorkspaceRecord } from "./record.ts";

/** Under TCG a guest takes seconds to boot; leave room for a loaded CI machine. */
export function bootTimeoutMs(env: Record<string, string | undefined> = process.env): number {
  const n = Number(env.PYRO_BOOT_TIMEOUT_MS);
  return Number.isFinite(n) && n > 0 ? n : 60000;
}

/** `resume`: restore the paused machine state (verified here) instead of booting. */
export async function prepareBoot(
  home: string,
  r: WorkspaceRecord,
  opts: { resume?: boolean } = {},
): Promise<{ backend: Backend; spec: BootSpec }> {
  const id = r.workspace_id;
  mkdirSync(runDir(home, id), { recursive: true, mode: 0o700 });
  mkdirSync(logsDir(home, id), { recursive: true, mode: 0o700 });
  const spec: BootSpec = {
    workspaceId: id,
    runDir: runDir(home, id),
    workspaceDir: hostRootDir(home, id),
    environment: null,
    vcpuCount: r.vcpu_count,
    memMib: r.mem_mib,
    network: r.network_policy !== "off",
    consoleLogPath: consoleLogPath(home, id),
    bootTimeoutMs: bootTimeoutMs(),
  };
  if (r.backend !== "host") {
    const env = findInstalled(home, r.environment);
    if (!env) {
      throw new PyroError("ENVIRONMENT_NOT_FOUND", `environment ${r.environment} is not installed`, {
        hint: `pyro env build ${r.environment}`,
      });
    }
    await verifyEnvironment(env);
    spec.environment = artifactsOf(env);
    const disk = dataDiskPath(home, id);
    if (!existsSync(disk)) throw new PyroError("INTERNAL", `workspace disk ${disk} is missing`);
    spec.dataDiskPath = disk;
  }
  if (opts.resume) {
    const state = await verifyPausedState(home, r);
    if (!state.ok) throw new PyroError("VMM_FAILED", `cannot resume: ${state.reason}`);
    spec.restoreFrom = state.path;
  }
  const backend = await loadBackend({ name: r.backend, accelerator: r.accelerator });
  return { backend, spec };
}
