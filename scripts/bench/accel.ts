/** Which accelerator pyro picks here, and why (from the KVM probe's cache in the bench home). */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export function bootAccelReason(home: string): { text: string; probeMs: number | null } {
  try {
    const e = JSON.parse(readFileSync(join(home, "cache", "kvm-probe.json"), "utf8"));
    const usable = Boolean(e.result?.usable);
    return {
      text: `${usable ? "KVM" : "TCG (KVM probe: not usable"}${usable ? ` (probe: ${e.result.reason})` : `: ${e.result?.reason})`}`,
      probeMs: typeof e.durationMs === "number" ? e.durationMs : null,
    };
  } catch {
    return { text: "TCG or KVM per PYRO_ACCEL / no /dev/kvm (no probe was needed)", probeMs: null };
  }
}
