/**
 * Locating Firecracker. Kept apart from index.ts so backend selection (src/vmm/select.ts)
 * can ask "is there a firecracker?" without loading the backend.
 */
import { accessSync, constants } from "node:fs";
import type { Env } from "../../base/paths.ts";

export type { Env };

/** PYRO_FIRECRACKER_BIN when set (it must be executable), else `firecracker` on PATH, else null. */
export function findFirecracker(env: Env = process.env): string | null {
  const override = env.PYRO_FIRECRACKER_BIN;
  return Bun.which(override || "firecracker", { PATH: env.PATH ?? "" });
}

export function kvmAccessible(kvmPath = "/dev/kvm"): boolean {
  try {
    accessSync(kvmPath, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export type FirecrackerAvailability = { ok: true; binary: string } | { ok: false; reason: string };

/**
 * Whether this backend can be tried: a binary is found and /dev/kvm is read/writable.
 * It cannot tell whether KVM really runs a stock kernel (paravirtual hosts do not): only a
 * boot can, which is what the KVM probe and the end-to-end test do.
 */
export function firecrackerAvailable(env: Env = process.env, kvmPath = "/dev/kvm"): FirecrackerAvailability {
  const binary = findFirecracker(env);
  if (!binary) {
    const reason = env.PYRO_FIRECRACKER_BIN
      ? `PYRO_FIRECRACKER_BIN=${env.PYRO_FIRECRACKER_BIN} is not an executable file`
      : "no firecracker binary on PATH (or set PYRO_FIRECRACKER_BIN)";
    return { ok: false, reason };
  }
  if (!kvmAccessible(kvmPath)) return { ok: false, reason: `${kvmPath} is missing or not read/writable` };
  return { ok: true, binary };
}

/** `firecracker --version` ("Firecracker v1.14.4" → "1.14.4"), or null when it does not say. */
export async function firecrackerVersion(bin: string): Promise<string | null> {
  try {
    const p = Bun.spawn([bin, "--version"], { stdout: "pipe", stderr: "ignore", stdin: "ignore", env: {} });
    const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
    const [out] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    clearTimeout(timer);
    return /\bv?(\d+\.\d+\.\d+)\b/.exec(out)?.[1] ?? null;
  } catch {
    return null;
  }
}
