/**
 * Which backend runs a machine. Never host compat unless the caller opted in; never KVM
 * because /dev/kvm exists, only because a probe boot proved it works.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Env } from "../base/paths.ts";
import { PyroError } from "../protocol/errors.ts";
import type { Accelerator, Backend, BackendName } from "./types.ts";

export interface BackendChoice {
  name: BackendName;
  accelerator: Accelerator;
}

function forced(env: Env): BackendName | null {
  const b = env.PYRO_BACKEND;
  if (!b) return null;
  if (b === "host" || b === "qemu" || b === "firecracker") return b;
  throw new PyroError("INVALID_INPUT", `PYRO_BACKEND must be host, qemu or firecracker (got "${b}")`);
}

/** KVM usable? PYRO_ACCEL=tcg|kvm skips the probe; otherwise boot-probe once per host boot. */
export async function kvmUsable(
  home: string,
  kernelPath: string,
  env: Env,
): Promise<{ usable: boolean; reason: string }> {
  if (env.PYRO_ACCEL === "tcg") return { usable: false, reason: "PYRO_ACCEL=tcg" };
  if (env.PYRO_ACCEL === "kvm") return { usable: true, reason: "PYRO_ACCEL=kvm" };
  if (!existsSync("/dev/kvm")) return { usable: false, reason: "/dev/kvm does not exist" };
  const { findQemu } = await import("./qemu/binary.ts");
  const qemuBin = findQemu(env);
  if (!qemuBin) return { usable: false, reason: "no qemu to probe with" };
  const { probeKvm } = await import("./probe/kvm.ts");
  const r = await probeKvm({ kernelPath, qemuBin, cacheFile: join(home, "cache", "kvm-probe.json") });
  return { usable: r.usable, reason: r.reason };
}

export async function chooseBackend(opts: {
  home: string;
  env: Env;
  allowHostCompat: boolean;
  /** kernel of the environment to boot, or null when none is installed */
  kernelPath: string | null;
  /**
   * The machine gets a network. Firecracker's networking (a tap from src/vmm/net) has not run
   * on a Firecracker host yet, so a networked machine goes to QEMU unless PYRO_BACKEND forces it.
   */
  network?: boolean;
}): Promise<BackendChoice> {
  const f = forced(opts.env);
  if (f === "host") return { name: "host", accelerator: null };
  if (opts.kernelPath) {
    const { findFirecracker } = await import("./firecracker/binary.ts");
    const { findQemu } = await import("./qemu/binary.ts");
    const fc = findFirecracker(opts.env);
    const qemu = findQemu(opts.env);
    if (f === "firecracker" || (!f && fc && !(opts.network && qemu))) {
      if (!fc)
        throw new PyroError("VMM_NOT_FOUND", "firecracker binary not found", {
          hint: "set PYRO_FIRECRACKER_BIN or put firecracker on PATH",
        });
      const kvm = await kvmUsable(opts.home, opts.kernelPath, opts.env);
      if (kvm.usable) return { name: "firecracker", accelerator: "kvm" };
      if (f === "firecracker")
        throw new PyroError("KVM_UNAVAILABLE", `firecracker needs a usable KVM: ${kvm.reason}`);
    }
    if (qemu) {
      const kvm = await kvmUsable(opts.home, opts.kernelPath, opts.env);
      return { name: "qemu", accelerator: kvm.usable ? "kvm" : "tcg" };
    }
    if (f === "qemu")
      throw new PyroError("VMM_NOT_FOUND", "qemu-system-x86_64 not found", {
        hint: "apt-get install qemu-system-x86",
      });
  }
  if (opts.allowHostCompat) return { name: "host", accelerator: null };
  if (!opts.kernelPath) {
    throw new PyroError("ENVIRONMENT_NOT_FOUND", "the environment is not installed", {
      hint: "build it with `pyro env build ENV`",
    });
  }
  throw new PyroError("BACKEND_UNAVAILABLE", "no VMM is available (neither firecracker with KVM nor qemu)", {
    hint: "install qemu-system-x86, or pass --allow-host-compat to run without isolation",
  });
}

export async function loadBackend(choice: BackendChoice): Promise<Backend> {
  switch (choice.name) {
    case "host":
      return (await import("./host/index.ts")).hostBackend;
    case "qemu": {
      const { qemuBackend } = await import("./qemu/index.ts");
      return qemuBackend({ accelerator: choice.accelerator === "kvm" ? "kvm" : "tcg" });
    }
    case "firecracker":
      return (await import("./firecracker/index.ts")).firecrackerBackend;
  }
}
