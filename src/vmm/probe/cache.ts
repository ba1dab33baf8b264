/**
 * The probe's answer is cached per host boot and kernel: both can change whether KVM works,
 * nothing else short of a reboot does (module reloads aside; delete the file to re-probe).
 */

export interface ProbeKey {
  bootId: string;
  kernelSha256: string;
  kernelSize: number;
  qemuBin: string;
}

export interface ProbeResult {
  usable: boolean;
  reason: string;
  /** The `-cpu` model that booted, when usable. */
  cpuModel?: string;
}

export interface ProbeCacheEntry {
  version: 1;
  key: ProbeKey;
  result: ProbeResult;
  probedAt: string;
  durationMs: number;
}

export function sameKey(a: ProbeKey, b: ProbeKey): boolean {
  return (
    a.bootId === b.bootId &&
    a.kernelSha256 === b.kernelSha256 &&
    a.kernelSize === b.kernelSize &&
    a.qemuBin === b.qemuBin
  );
}

/** The cached result if the file's entry matches `key`; null for a miss or a damaged file. */
export function cachedResult(text: string | null, key: ProbeKey): ProbeResult | null {
  if (!text) return null;
  try {
    const entry = JSON.parse(text) as ProbeCacheEntry;
    if (entry?.version !== 1 || !entry.key || !entry.result) return null;
    if (!sameKey(entry.key, key)) return null;
    if (typeof entry.result.usable !== "boolean" || typeof entry.result.reason !== "string") return null;
    return entry.result;
  } catch {
    return null;
  }
}
