/**
 * Is KVM usable for a real guest on this host? Opening /dev/kvm proves little (on a
 * paravirtual (PVM) host KVM_CREATE_VM works but no stock kernel boots), so boot the
 * environment's kernel with no disk and watch the console; cache the answer per host boot.
 */
import {
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname } from "node:path";
import { pdeathsigPrefix } from "../process.ts";
import { cachedResult, type ProbeCacheEntry, type ProbeKey, type ProbeResult } from "./cache.ts";
import { judgeProbe, type ProbeVerdict } from "./judge.ts";

export interface KvmProbeOptions {
  kernelPath: string;
  qemuBin: string;
  cacheFile?: string;
  /** Per boot attempt; default 8000 ms. */
  timeoutMs?: number;
  /** `-cpu` models tried in order until one boots; default ["host"]. */
  cpuModels?: string[];
  /** Tests only: the device to check, and an accelerator to exercise the boot path under TCG. */
  devicePath?: string;
  accelerator?: "kvm" | "tcg";
}

export interface KvmProbeReport extends ProbeResult {
  /** True when the answer came from the cache file. */
  cached: boolean;
  durationMs: number;
}

const CONSOLE_CAP = 256 * 1024;

export async function probeKvm(opts: KvmProbeOptions): Promise<KvmProbeReport> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const device = opts.devicePath ?? "/dev/kvm";
  const accel = opts.accelerator ?? "kvm";
  if (accel === "kvm") {
    const why = kvmDeviceProblem(device);
    if (why) return { usable: false, reason: why, cached: false, durationMs: elapsed() };
  }

  let key: ProbeKey;
  try {
    key = probeKey(opts);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return {
      usable: false,
      reason: `cannot read kernel ${opts.kernelPath}: ${code}`,
      cached: false,
      durationMs: elapsed(),
    };
  }
  const cacheFile = opts.cacheFile;
  if (cacheFile) {
    const hit = cachedResult(readOrNull(cacheFile), key);
    if (hit) return { ...hit, cached: true, durationMs: elapsed() };
  }

  const reasons: string[] = [];
  let result: ProbeResult | null = null;
  for (const cpuModel of opts.cpuModels ?? ["host"]) {
    const v = await probeBoot(opts.qemuBin, opts.kernelPath, accel, cpuModel, opts.timeoutMs ?? 8000);
    if (v.usable) {
      result = { usable: true, reason: v.reason, cpuModel };
      break;
    }
    reasons.push(`-cpu ${cpuModel}: ${v.reason}`);
  }
  result ??= { usable: false, reason: reasons.join("; ") };

  const durationMs = elapsed();
  if (cacheFile) {
    const entry: ProbeCacheEntry = {
      version: 1,
      key,
      result,
      probedAt: new Date().toISOString(),
      durationMs,
    };
    writeAtomic(cacheFile, `${JSON.stringify(entry, null, 2)}\n`);
  }
  return { ...result, cached: false, durationMs };
}

/** null when the device opens read-write (what QEMU needs); else why not. */
export function kvmDeviceProblem(path = "/dev/kvm"): string | null {
  try {
    closeSync(openSync(path, constants.O_RDWR));
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      return `${path} does not exist (no KVM module loaded, or a container without the device)`;
    if (code === "EACCES" || code === "EPERM")
      return `${path} is not accessible to this user (join the kvm group)`;
    return `${path} cannot be opened: ${code ?? String(err)}`;
  }
}

/**
 * The cache key names the kernel by size, mtime and inode rather than a hash: hashing 22 MB
 * cost ~30 ms on every run and create, and installed kernels are only ever replaced by rename.
 */
function probeKey(opts: KvmProbeOptions): ProbeKey {
  const st = statSync(opts.kernelPath);
  const bootId = readOrNull("/proc/sys/kernel/random/boot_id")?.trim() ?? "unknown";
  const kernelSha256 = `stat:${st.size}:${st.mtimeMs}:${st.ino}`;
  return { bootId, kernelSha256, kernelSize: st.size, qemuBin: opts.qemuBin };
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function writeAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** The probe's QEMU line: the backend's machine, no disks, console on stdout. */
export function probeArgv(
  qemuBin: string,
  kernelPath: string,
  accel: "kvm" | "tcg",
  cpuModel: string,
): string[] {
  return [
    qemuBin,
    "-M",
    "microvm,acpi=off",
    "-accel",
    accel,
    "-cpu",
    cpuModel,
    "-m",
    "128",
    "-smp",
    "1",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    "-serial",
    "stdio",
    "-kernel",
    kernelPath,
    "-append",
    // No disk: a working kernel ends in the mount-root panic, then panic=-1 resets and
    // -no-reboot ends QEMU. loglevel=7 so the banner and init lines reach the console.
    "console=ttyS0 panic=-1 loglevel=7 root=/dev/vda init=/pyro-kvm-probe",
  ];
}

type Decided = Extract<ProbeVerdict, { done: true }>;

async function probeBoot(
  qemuBin: string,
  kernel: string,
  accel: "kvm" | "tcg",
  cpu: string,
  timeoutMs: number,
) {
  const proc = Bun.spawn([...pdeathsigPrefix(), ...probeArgv(qemuBin, kernel, accel, cpu)], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const seen = { console: "", stderr: "", timedOut: false, exitCode: undefined as number | null | undefined };
  const verdict = await new Promise<Decided>((resolve) => {
    let settled = false;
    const check = () => {
      if (settled) return;
      const v = judgeProbe(seen);
      if (!v.done) return;
      settled = true;
      clearTimeout(timer);
      resolve(v);
    };
    const timer = setTimeout(() => {
      seen.timedOut = true;
      check();
    }, timeoutMs);
    const out = pump(proc.stdout, (s) => {
      seen.console = (seen.console + s).slice(-CONSOLE_CAP);
      check();
    });
    const err = pump(proc.stderr, (s) => {
      seen.stderr = (seen.stderr + s).slice(-CONSOLE_CAP);
      check();
    });
    Promise.all([proc.exited, out, err]).then(() => {
      seen.exitCode = proc.signalCode ? null : proc.exitCode;
      check();
    });
  });
  proc.kill("SIGKILL");
  await proc.exited;
  return verdict;
}

async function pump(stream: ReadableStream<Uint8Array>, onText: (s: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) onText(decoder.decode(chunk, { stream: true }));
}
