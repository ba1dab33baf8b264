/**
 * The QEMU process wrapper: resolve the accelerator, spawn QEMU (dying with its
 * supervisor), confirm it reached its main loop over QMP, and hand out the agent channel.
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mark } from "../../base/profile.ts";
import { PyroError } from "../../protocol/errors.ts";
import { kvmDeviceProblem, probeKvm } from "../probe/kvm.ts";
import { hostTscKhz } from "../probe/tsc.ts";
import {
  pdeathsigPrefix,
  prepareSocketPaths,
  spawnThp,
  stopProcess,
  tailFile,
  vmmThpDisabled,
} from "../process.ts";
import { connectUnixChannel } from "../socket-channel.ts";
import type { Backend, BootSpec, ByteChannel, VmHandle } from "../types.ts";
import { buildQemuArgv, type QemuAccelerator } from "./argv.ts";
import { type Env, requireQemu } from "./binary.ts";
import { loadVmState, type SavedState, saveVmState } from "./migrate.ts";
import { connectQmp, type QmpClient } from "./qmp.ts";

export interface QemuBackendOptions {
  /**
   * "auto" (default): KVM when the probe boots the kernel on it (cached per host boot in
   * probeCacheFile), else TCG. "kvm": trust the caller, only check that /dev/kvm opens.
   */
  accelerator?: QemuAccelerator | "auto";
  env?: Env;
  /** Where the KVM probe's verdict is cached (per host boot + kernel); none by default. */
  probeCacheFile?: string;
  probeTimeoutMs?: number;
}

// QEMU reaches its main loop (QMP answers) in well under a second; a missing file or a bad
// option makes it exit before that.
const STARTUP_CAP_MS = 30_000;

export function qemuRunPaths(runDir: string) {
  return {
    agentSocket: join(runDir, "agent.sock"),
    qmpSocket: join(runDir, "qmp.sock"),
    qemuLog: join(runDir, "qemu.log"),
    migrateSocket: join(runDir, "migrate.sock"),
  };
}

export function qemuBackend(opts: QemuBackendOptions = {}): Backend {
  const env = opts.env ?? process.env;
  // One probe per kernel per process; the cache file spans processes.
  const verdicts = new Map<string, Promise<{ usable: boolean; reason: string; cpuModel?: string }>>();

  async function chooseAccelerator(kernelPath: string, qemuBin: string) {
    const wanted = opts.accelerator ?? "auto";
    if (wanted === "tcg") return { accelerator: "tcg" as const };
    if (wanted === "kvm") {
      // The caller decided (after its own probe, or PYRO_ACCEL=kvm): only check the device.
      const why = kvmDeviceProblem();
      if (why) throw new PyroError("KVM_UNAVAILABLE", why, { hint: "use the TCG accelerator (slower)" });
      return { accelerator: "kvm" as const };
    }
    let verdict = verdicts.get(kernelPath);
    if (!verdict) {
      verdict = probeKvm({
        kernelPath,
        qemuBin,
        cacheFile: opts.probeCacheFile,
        timeoutMs: opts.probeTimeoutMs,
      });
      verdicts.set(kernelPath, verdict);
      verdict.catch(() => verdicts.delete(kernelPath));
    }
    const v = await verdict;
    return v.usable ? { accelerator: "kvm" as const, cpuModel: v.cpuModel } : { accelerator: "tcg" as const };
  }

  return {
    name: "qemu",
    async boot(spec: BootSpec): Promise<VmHandle> {
      const envArtifacts = spec.environment;
      if (!envArtifacts)
        throw new PyroError("INVALID_INPUT", "the qemu backend needs an environment (kernel + rootfs)");
      const qemuBin = requireQemu(env);
      const paths = qemuRunPaths(spec.runDir);
      prepareSocketPaths([paths.agentSocket, paths.qmpSocket, paths.migrateSocket]);
      const { accelerator, cpuModel } = await chooseAccelerator(envArtifacts.kernelPath, qemuBin);
      const argv = buildQemuArgv(spec, {
        accelerator,
        cpuModel,
        qemuBin,
        agentSocketPath: paths.agentSocket,
        qmpSocketPath: paths.qmpSocket,
        hostTscKhz: accelerator === "tcg" ? hostTscKhz() : undefined,
      });
      writeFileSync(paths.qemuLog, ""); // Bun appends to a file given as stderr
      // without transparent huge pages unless PYRO_VMM_THP=on (process.ts vmmThpDisabled)
      const proc = spawnThp(vmmThpDisabled(env), () =>
        Bun.spawn([...pdeathsigPrefix("KILL", env), ...argv], {
          stdin: "ignore",
          stdout: Bun.file(paths.qemuLog),
          stderr: Bun.file(paths.qemuLog),
        }),
      );
      const vm = new QemuVm(proc, spec, paths, accelerator);
      mark("qemu.spawned");
      const startDeadline = Date.now() + Math.min(spec.bootTimeoutMs, STARTUP_CAP_MS);
      await vm.waitStarted(startDeadline).catch((err) => {
        // QEMU alive but not answering by the caller's own (short) boot deadline: a timeout,
        // not a broken QEMU (which exits by itself, with its own last words)
        const e = err as PyroError;
        if (
          spec.bootTimeoutMs <= STARTUP_CAP_MS &&
          Date.now() >= startDeadline &&
          e.details?.exit === "SIGKILL"
        )
          throw new PyroError("GUEST_BOOT_TIMEOUT", `QEMU did not start within ${spec.bootTimeoutMs} ms`, {
            details: { ...e.details, console_tail: String(e.details?.console ?? "") },
            cause: err,
          });
        throw err;
      });
      mark("qemu.qmp-ready");
      if (spec.restoreFrom) await vm.restore(spec.restoreFrom, Date.now() + spec.bootTimeoutMs);
      mark("qemu.restored");
      return vm;
    },
  };
}

class QemuVm implements VmHandle {
  readonly backend = "qemu" as const;
  readonly pid: number;
  readonly exited: Promise<number | null>;
  private qmp: QmpClient | null = null;
  private hasExited = false;
  private exitAbort = new AbortController();

  constructor(
    private proc: Bun.Subprocess,
    private spec: BootSpec,
    private paths: ReturnType<typeof qemuRunPaths>,
    readonly accelerator: QemuAccelerator,
  ) {
    this.pid = proc.pid;
    this.exited = proc.exited.then(() => {
      this.hasExited = true;
      this.qmp?.close();
      // QEMU unlinks its sockets on a clean exit, not when killed: never leave them behind.
      rmSync(paths.agentSocket, { force: true });
      rmSync(paths.qmpSocket, { force: true });
      rmSync(paths.migrateSocket, { force: true });
      this.exitAbort.abort(this.failure("QEMU exited"));
      return proc.signalCode ? null : proc.exitCode;
    });
  }

  /** QMP answering query-status means QEMU opened every file and entered its main loop. */
  async waitStarted(deadlineMs: number): Promise<void> {
    try {
      // QEMU makes the socket a few hundred ms after its start: look often (a connect is cheap),
      // not with the default backoff that can oversleep its appearance by up to 200 ms
      this.qmp = await connectQmp(this.paths.qmpSocket, deadlineMs, {
        signal: this.exitAbort.signal,
        retryDelayMs: 5,
        maxRetryDelayMs: 15,
      });
      const status = await this.qmp.queryStatus();
      // `-incoming defer` (resume) waits in "inmigrate" until the state is streamed in.
      const expected = this.spec.restoreFrom ? status.status === "inmigrate" : status.running;
      if (!expected) throw this.failure(`QEMU is not running (status ${status.status})`);
    } catch (err) {
      this.kill();
      await this.exited;
      // Prefer the exit story (QEMU's own error message) over a socket error.
      throw err instanceof PyroError && err.code === "VMM_FAILED" && err.details?.qemuLog !== undefined
        ? err
        : this.failure("QEMU did not start", err);
    }
  }

  /** Stream the saved state in (QEMU waits under `-incoming defer`); kills QEMU on failure. */
  async restore(statePath: string, deadlineMs: number): Promise<void> {
    try {
      // A clone of a template: its RAM is the template's file, not in the stream.
      const ignoreShared = this.spec.memoryFile !== undefined;
      await loadVmState(this.qmp as QmpClient, this.paths.migrateSocket, statePath, deadlineMs, {
        ignoreShared,
      });
    } catch (err) {
      this.kill();
      await this.exited;
      // Out of time (a loaded host, a tiny boot timeout): the boot timed out, as a cold one would.
      if (Date.now() >= deadlineMs) {
        const f = this.failure("restoring the machine state did not finish in time", err);
        throw new PyroError("GUEST_BOOT_TIMEOUT", f.message, {
          details: { ...f.details, console_tail: String(f.details?.console ?? "") },
          cause: err,
        });
      }
      // QEMU's own last words (e.g. a state that does not fit this machine) say most.
      throw this.failure(`resume failed (${(err as Error).message})`, err);
    }
  }

  async saveState(
    path: string,
    deadlineMs: number,
    opts: { ignoreShared?: boolean } = {},
  ): Promise<SavedState> {
    if (this.hasExited || !this.qmp) throw this.failure("QEMU has exited");
    return saveVmState(this.qmp, this.paths.migrateSocket, path, deadlineMs, opts);
  }

  async runState(): Promise<string> {
    if (this.hasExited || !this.qmp) throw this.failure("QEMU has exited");
    return (await this.qmp.queryStatus()).status;
  }

  async continueVm(): Promise<void> {
    if (this.hasExited || !this.qmp) throw this.failure("QEMU has exited");
    await this.qmp.execute("cont");
  }

  failure(message: string, cause?: unknown): PyroError {
    const code = this.proc.signalCode ?? this.proc.exitCode;
    const qemuLog = tailFile(this.paths.qemuLog, 2048);
    const consoleTail = tailFile(this.spec.consoleLogPath, 2048);
    const last = qemuLog.trim().split("\n").at(-1) ?? "";
    return new PyroError(
      "VMM_FAILED",
      `${message}${code === null ? "" : ` (${code})`}${last ? `: ${last}` : ""}`,
      {
        details: { pid: this.pid, exit: code, qemuLog, console: consoleTail },
        cause,
      },
    );
  }

  async connect(deadlineMs: number): Promise<ByteChannel> {
    if (this.hasExited) throw this.failure("QEMU has exited");
    return connectUnixChannel(this.paths.agentSocket, deadlineMs, { signal: this.exitAbort.signal });
  }

  async stop(timeoutMs: number): Promise<void> {
    if (this.hasExited) return;
    // `quit` ends QEMU at once; the caller has already had the agent sync and power off.
    await stopProcess(this.proc, this.exited, timeoutMs, () => this.qmp?.quit());
  }

  kill(): void {
    if (!this.hasExited) this.proc.kill("SIGKILL");
  }
}
