/**
 * The Firecracker backend: write a `--config-file` JSON into the run dir, spawn Firecracker
 * (optionally under its jailer), reach the guest agent over hybrid vsock, and use the API
 * socket only for runtime calls (Ctrl-Alt-Del, pause, snapshots).
 */
import {
  chownSync,
  closeSync,
  constants,
  copyFileSync,
  linkSync,
  mkdirSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { PyroError } from "../../protocol/errors.ts";
import { pdeathsigPrefix, prepareSocketPaths, stopProcess, tailFile } from "../process.ts";
import type { UnixByteChannel } from "../socket-channel.ts";
import type { Backend, BootSpec, VmHandle } from "../types.ts";
import { FirecrackerApi } from "./api.ts";
import { type Env, findFirecracker, kvmAccessible } from "./binary.ts";
import { buildFirecrackerConfig, firecrackerKernelArgs, type TapDevice } from "./config.ts";
import { hostPath, type JailLayout, jailerArgv, jailerSettings, jailLayout } from "./jailer.ts";
import { AGENT_VSOCK_PORT, connectVsock } from "./vsock.ts";

export { FirecrackerApi } from "./api.ts";
export { type FirecrackerAvailability, findFirecracker, firecrackerAvailable } from "./binary.ts";
export {
  buildFirecrackerConfig,
  DEFAULT_GUEST_CID,
  firecrackerKernelArgs,
  parseConfig,
  type TapDevice,
} from "./config.ts";
export { FIRECRACKER_API_VERSION } from "./schema.ts";
export { AGENT_VSOCK_PORT, connectVsock } from "./vsock.ts";

export interface FirecrackerBackendOptions {
  /** Defaults to process.env at boot time. */
  env?: Env;
  /** Supplies the tap device (src/net) for a VM whose spec asks for network. */
  tapFor?: (spec: BootSpec) => Promise<TapDevice | null> | TapDevice | null;
  guestCid?: number;
  /** Tests point this at a plain file to exercise the spawn path without KVM. */
  kvmPath?: string;
}

export interface FirecrackerVmHandle extends VmHandle {
  readonly api: FirecrackerApi;
  readonly apiSocketPath: string;
  readonly vsockPath: string;
  readonly configPath: string;
}

export function createFirecrackerBackend(opts: FirecrackerBackendOptions = {}): Backend {
  return { name: "firecracker", boot: (spec) => bootFirecracker(spec, opts) };
}

export const firecrackerBackend: Backend = createFirecrackerBackend();

interface LaunchPlan {
  argv: string[];
  apiSock: string;
  vsock: string;
  configHostPath: string;
  configPaths?: { kernel: string; rootfs: string; dataDisk?: string };
  vsockInConfig: string;
  /** Files Firecracker must be able to read (and the data disk: write) as its own uid. */
  chownTo?: { uid: number; gid: number };
  jail?: JailLayout;
}

async function bootFirecracker(
  spec: BootSpec,
  opts: FirecrackerBackendOptions,
): Promise<FirecrackerVmHandle> {
  const env = opts.env ?? process.env;
  const kvmPath = opts.kvmPath ?? "/dev/kvm";
  if (!spec.environment) {
    throw new PyroError("INVALID_INPUT", "the firecracker backend needs an environment (kernel + rootfs)");
  }
  const fcBin = findFirecracker(env);
  if (!fcBin) {
    throw new PyroError("VMM_NOT_FOUND", "firecracker binary not found", {
      hint: "install Firecracker (>= 1.10) and put it on PATH, or set PYRO_FIRECRACKER_BIN",
      details: { PYRO_FIRECRACKER_BIN: env.PYRO_FIRECRACKER_BIN },
    });
  }
  if (!kvmAccessible(kvmPath)) {
    throw new PyroError("KVM_UNAVAILABLE", `${kvmPath} is missing or not read/writable`, {
      hint: "Firecracker needs KVM; use the qemu backend (TCG) on hosts without it",
    });
  }
  const tap = spec.network ? (spec.tap ?? (await opts.tapFor?.(spec)) ?? null) : null;
  if (spec.network && !tap) {
    throw new PyroError(
      "BACKEND_UNAVAILABLE",
      "firecracker networking needs a tap device, and none was provided",
    );
  }

  const jailer = jailerSettings(env, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
  const plan = jailer ? planJailed(spec, fcBin, jailer) : planDirect(spec, fcBin);
  prepareSocketPaths([plan.apiSock, plan.vsock]);
  const config = buildFirecrackerConfig(spec, {
    vsockUdsPath: plan.vsockInConfig,
    guestCid: opts.guestCid,
    tap: tap ?? undefined,
    kernelArgs: firecrackerKernelArgs(spec, tap ?? undefined),
    paths: plan.configPaths,
  });
  writeFileSync(plan.configHostPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  if (plan.chownTo) chownSync(plan.configHostPath, plan.chownTo.uid, plan.chownTo.gid);

  // The VMM must never outlive the supervisor (binary.ts). Under the jailer with another
  // uid/gid the kernel clears the death signal at the credential change; the supervisor's
  // pid check covers that case.
  const argv = [...pdeathsigPrefix("KILL", env), ...plan.argv];
  mkdirSync(dirname(spec.consoleLogPath), { recursive: true });
  const logFd = openSync(spec.consoleLogPath, "a", 0o600);
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(argv, {
      cwd: spec.runDir,
      // Firecracker needs no environment; the supervisor's may hold secrets.
      env: { PATH: env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
      stdin: "ignore",
      // The guest serial console is Firecracker's stdout; its own log lines go there too.
      stdout: logFd,
      stderr: logFd,
    });
  } catch (err) {
    throw new PyroError("VMM_FAILED", `cannot start firecracker: ${(err as Error).message}`, { cause: err });
  } finally {
    closeSync(logFd);
  }
  return new FirecrackerVm(proc, plan, spec.consoleLogPath);
}

function planDirect(spec: BootSpec, fcBin: string): LaunchPlan {
  const apiSock = join(spec.runDir, "fc.sock");
  const vsock = join(spec.runDir, "vsock.sock");
  const configHostPath = join(spec.runDir, "fc.json");
  return {
    argv: [fcBin, "--api-sock", apiSock, "--config-file", configHostPath],
    apiSock,
    vsock,
    configHostPath,
    vsockInConfig: vsock,
  };
}

function planJailed(
  spec: BootSpec,
  fcBin: string,
  s: NonNullable<ReturnType<typeof jailerSettings>>,
): LaunchPlan {
  const env = spec.environment!;
  const layout = jailLayout(spec.runDir, fcBin, spec.workspaceId);
  rmSync(layout.instanceDir, { recursive: true, force: true }); // a previous run's jail
  mkdirSync(layout.root, { recursive: true, mode: 0o700 });
  const inJail = (p: string) => hostPath(layout, p);
  // Hard links cost nothing; a copy is fine for the read-only files, never for the data
  // disk (the guest's writes would land in the copy).
  linkOrCopy(env.kernelPath, inJail(layout.inside.kernel));
  linkOrCopy(env.rootfsPath, inJail(layout.inside.rootfs));
  if (spec.dataDiskPath) {
    try {
      linkSync(spec.dataDiskPath, inJail(layout.inside.dataDisk));
    } catch (err) {
      throw new PyroError(
        "INVALID_INPUT",
        `the jailer needs the data disk on the run dir's filesystem: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const st = statSync(spec.dataDiskPath);
    if (st.uid !== s.uid || st.gid !== s.gid) chownSync(spec.dataDiskPath, s.uid, s.gid);
  }
  const fcArgs = ["--api-sock", layout.inside.apiSock, "--config-file", layout.inside.config];
  return {
    argv: jailerArgv(s, layout, fcBin, fcArgs),
    apiSock: inJail(layout.inside.apiSock),
    vsock: inJail(layout.inside.vsock),
    configHostPath: inJail(layout.inside.config),
    configPaths: {
      kernel: layout.inside.kernel,
      rootfs: layout.inside.rootfs,
      dataDisk: spec.dataDiskPath ? layout.inside.dataDisk : undefined,
    },
    vsockInConfig: layout.inside.vsock,
    chownTo: { uid: s.uid, gid: s.gid },
    jail: layout,
  };
}

function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to, constants.COPYFILE_FICLONE);
  }
}

class FirecrackerVm implements FirecrackerVmHandle {
  readonly backend = "firecracker" as const;
  readonly accelerator = "kvm" as const;
  readonly pid: number;
  readonly exited: Promise<number | null>;
  readonly api: FirecrackerApi;
  readonly apiSocketPath: string;
  readonly vsockPath: string;
  readonly configPath: string;
  private hasExited = false;
  private connectedOnce = false;

  constructor(
    private readonly proc: ReturnType<typeof Bun.spawn>,
    plan: LaunchPlan,
    private readonly consoleLogPath: string,
  ) {
    this.pid = proc.pid;
    this.apiSocketPath = plan.apiSock;
    this.vsockPath = plan.vsock;
    this.configPath = plan.configHostPath;
    this.api = new FirecrackerApi(plan.apiSock);
    this.exited = proc.exited.then(() => {
      this.hasExited = true;
      // Firecracker leaves its sockets behind; the jail holds only links and device nodes.
      try {
        rmSync(plan.apiSock, { force: true });
        rmSync(plan.vsock, { force: true });
        if (plan.jail) rmSync(plan.jail.instanceDir, { recursive: true, force: true });
      } catch {
        // Best effort: the next boot removes stale sockets before starting anyway.
      }
      return proc.exitCode; // null when a signal ended it
    });
  }

  /**
   * The agent stream over vsock port 1024, retrying until `deadlineMs` (absolute, Date.now()
   * scale). Fails fast with VMM_FAILED if Firecracker exits meanwhile; a deadline before the
   * first successful connect is a GUEST_BOOT_TIMEOUT.
   */
  async connect(deadlineMs: number): Promise<UnixByteChannel> {
    const ac = new AbortController();
    let settled = false;
    void this.exited.then((code) => {
      if (settled) return;
      ac.abort(
        new PyroError(
          "VMM_FAILED",
          `firecracker exited (${code === null ? "killed by a signal" : `code ${code}`}) before the guest agent answered`,
          {
            details: { exitCode: code, consoleTail: tailFile(this.consoleLogPath) },
          },
        ),
      );
    });
    try {
      const channel = await connectVsock(this.vsockPath, AGENT_VSOCK_PORT, deadlineMs, { signal: ac.signal });
      this.connectedOnce = true;
      return channel;
    } catch (err) {
      if (!this.connectedOnce && err instanceof PyroError && err.code === "GUEST_UNREACHABLE") {
        throw new PyroError(
          "GUEST_BOOT_TIMEOUT",
          `the guest agent did not answer on vsock port ${AGENT_VSOCK_PORT} in time`,
          {
            details: { ...err.details, consoleTail: tailFile(this.consoleLogPath) },
            cause: err,
          },
        );
      }
      throw err;
    } finally {
      settled = true;
    }
  }

  /** Ctrl-Alt-Del (the guest reboots → Firecracker exits), then SIGKILL once timeoutMs is up. */
  async stop(timeoutMs: number): Promise<void> {
    if (this.hasExited) return;
    // No API socket (yet), or the VM already going down, fails the ask: the kill covers it.
    await stopProcess(this.proc, this.exited, timeoutMs, () =>
      this.api.sendCtrlAltDel({ timeoutMs: Math.max(1, Math.min(2000, timeoutMs)) }),
    );
  }

  kill(): void {
    if (!this.hasExited) this.proc.kill("SIGKILL");
  }
}
