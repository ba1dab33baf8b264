/** Locating QEMU and asking its version. (Starting it so it dies with its spawner: ../process.ts.) */
import type { Env } from "../../base/paths.ts";
import { PyroError } from "../../protocol/errors.ts";

export type { Env };

export const QEMU_BIN_NAME = "qemu-system-x86_64";

/** `PYRO_QEMU_BIN` if set (must exist), else `qemu-system-x86_64` on PATH; null when absent. */
export function findQemu(env: Env = process.env): string | null {
  const override = env.PYRO_QEMU_BIN;
  if (override) return Bun.which(override, { PATH: env.PATH ?? "" });
  return Bun.which(QEMU_BIN_NAME, { PATH: env.PATH ?? "" });
}

export function requireQemu(env: Env = process.env): string {
  const bin = findQemu(env);
  if (bin) return bin;
  const wanted = env.PYRO_QEMU_BIN ?? QEMU_BIN_NAME;
  throw new PyroError("VMM_NOT_FOUND", `QEMU not found: ${wanted}`, {
    details: { wanted },
    hint: "install qemu-system-x86 (Debian/Ubuntu) or set PYRO_QEMU_BIN",
  });
}

/** "QEMU emulator version 7.2.22 (Debian ...)" → "7.2.22". */
export function parseQemuVersion(text: string): string | null {
  return /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1] ?? null;
}

export async function qemuVersion(bin: string): Promise<string | null> {
  const proc = Bun.spawn([bin, "--version"], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  return parseQemuVersion(out);
}
