/**
 * The Firecracker backend: write a `--config-file` JSON into the run dir, spawn Firecracker
 * (optionally under its jailer), reach the guest agent over hybrid vsock, and use the API
 * socket only for runtime calls (Ctrl-Alt-Del, pause, snapshots).
 *
 * Pause/resume (docs/firecracker.md): `saveState` pauses the VM and writes a Full snapshot
 * (state file at the given path, guest memory beside it, snapshot.ts); a boot with
 * `spec.restoreFrom` starts Firecracker with no config file (API only), loads that snapshot
 * with resume_vm, and the agent is reached over vsock again (Firecracker resets the vsock
 * transport on restore: the guest's listener survives, its connections do not).
 *
 * VM templates (docs/firecracker.md "Templates"; src/manager/templates-firecracker.ts stores
 * them): a boot with `spec.memoryFile` shared is a template boot (its per-clone files, the data
 * drive and the vsock socket, named relative to the run dir; `saveState` with `ignoreShared`
 * writes the memory to `spec.memoryFile.path`); a boot with `spec.memoryFile` not shared and
 * `spec.restoreFrom` is a clone (template.ts: load paused with the memory file mapped private,
 * PATCH the data drive to the clone's disk, resume).
 */
import {
  chownSync,
  closeSync,
  constants,
  copyFileSync,
  linkSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
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
import type { InstanceInfo } from "./schema.ts";
import { hashStateFiles, memoryFileOf, resumeLoadParams, snapshotFiles } from "./snapshot.ts";
import {
  type ClonePlan,
  planTemplateClone,
  readTemplateDescriptor,
  runClonePlan,
  TEMPLATE_DATA_DRIVE_PATH,
  TEMPLATE_VSOCK_PATH,
} from "./template.ts";
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
export { hashStateFiles, memoryFileOf, resumeLoadParams, snapshotFiles } from "./snapshot.ts";
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
  /** Snapshot files as Firecracker names them (inside the jail when jailed; else null: the caller's paths). */
  snapshotInside: { state: string; mem: string } | null;
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
  // a template boot (memory file shared) or a template clone (not shared, with the template's state)
  const template = spec.memoryFile?.shared ? "make" : spec.memoryFile ? "clone" : null;
  if (template === "clone" && spec.restoreFrom === undefined) {
    throw new PyroError(
      "INVALID_INPUT",
      "a firecracker template clone needs the template's state (restoreFrom)",
    );
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
  if (template && jailerSettings(env, { uid: 0, gid: 0 })) {
    throw new PyroError(
      "INVALID_INPUT",
      "firecracker VM templates are not used under the jailer (boot cold)",
    );
  }
  const tap = spec.network ? (spec.tap ?? (await opts.tapFor?.(spec)) ?? null) : null;
  if (spec.network && !tap) {
    throw new PyroError(
      "BACKEND_UNAVAILABLE",
      "firecracker networking needs a tap device, and none was provided",
    );
  }

  // A resume starts Firecracker without a config file: PUT /snapshot/load is only accepted
  // by a process with nothing configured. The snapshot brings back drives, vsock and net
  // device with the paths and tap name they had (same run dir, same jail layout, and a tap
  // name that follows from the workspace id).
  if (template === "clone") return cloneFirecracker(spec, fcBin, tap, env);
  const restoreFrom = spec.restoreFrom;
  const withConfig = restoreFrom === undefined;
  const jailer = jailerSettings(env, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
  const plan = jailer
    ? planJailed(spec, fcBin, jailer, withConfig)
    : planDirect(spec, fcBin, withConfig, template === "make");
  prepareSocketPaths([plan.apiSock, plan.vsock]);
  if (withConfig) {
    const config = buildFirecrackerConfig(spec, {
      vsockUdsPath: plan.vsockInConfig,
      guestCid: opts.guestCid,
      tap: tap ?? undefined,
      kernelArgs: firecrackerKernelArgs(spec, tap ?? undefined),
      paths: plan.configPaths,
    });
    writeFileSync(plan.configHostPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    if (plan.chownTo) chownSync(plan.configHostPath, plan.chownTo.uid, plan.chownTo.gid);
  } else {
    rmSync(plan.configHostPath, { force: true }); // a cold boot's config must not look current
    if (plan.jail && plan.snapshotInside) {
      // The jailed Firecracker sees only its root: bring the saved files in (links, read-only use).
      const [state, mem] = snapshotFiles(restoreFrom);
      for (const [from, inside] of [
        [state, plan.snapshotInside.state],
        [mem, plan.snapshotInside.mem],
      ] as const) {
        const to = hostPath(plan.jail, inside);
        linkOrCopy(from, to);
        if (plan.chownTo) chownSync(to, plan.chownTo.uid, plan.chownTo.gid);
      }
    }
  }

  const proc = spawnFirecracker(plan.argv, spec, env);
  const vm = new FirecrackerVm(
    proc,
    plan,
    spec.consoleLogPath,
    spec.memoryFile?.shared ? spec.memoryFile.path : null,
  );
  if (restoreFrom !== undefined) await vm.restore(restoreFrom, Date.now() + spec.bootTimeoutMs);
  return vm;
}

/**
 * A clone of a template (template.ts): a bare Firecracker in the clone's run dir, the snapshot
 * loaded paused with the template's memory file mapped private, the data drive patched to the
 * clone's own disk, then resumed. Checks that the running Firecracker is the one that saved
 * the template. Any failure kills it and is VMM_FAILED (the supervisor then boots cold).
 */
async function cloneFirecracker(
  spec: BootSpec,
  fcBin: string,
  tap: TapDevice | null,
  env: Env,
): Promise<FirecrackerVmHandle> {
  const statePath = spec.restoreFrom as string;
  const memPath = spec.memoryFile?.path as string;
  if (!spec.dataDiskPath)
    throw new PyroError("INVALID_INPUT", "a firecracker template clone needs a data disk");
  const descriptor = readTemplateDescriptor(statePath);
  const cp = planTemplateClone(
    { statePath, memPath, config: descriptor.config, firecrackerVersion: descriptor.firecracker_version },
    {
      firecrackerBin: fcBin,
      runDir: spec.runDir,
      dataDiskPath: spec.dataDiskPath,
      tapName: tap?.hostDevName,
      // checked against the running process (GET /) before the load
      firecrackerVersion: descriptor.firecracker_version,
    },
  );
  prepareSocketPaths(cp.removeBeforeStart);
  const configHostPath = join(spec.runDir, "fc.json");
  rmSync(configHostPath, { force: true }); // a cold boot's config must not look current
  for (const l of cp.links) {
    rmSync(l.path, { force: true });
    symlinkSync(l.target, l.path);
  }
  const plan: LaunchPlan = {
    argv: cp.argv,
    apiSock: cp.apiSocketPath,
    vsock: cp.vsockPath,
    configHostPath,
    vsockInConfig: descriptor.config.vsock?.uds_path ?? TEMPLATE_VSOCK_PATH,
    snapshotInside: null,
  };
  const proc = spawnFirecracker(plan.argv, spec, env);
  const vm = new FirecrackerVm(proc, plan, spec.consoleLogPath, null);
  await vm.clone(cp, descriptor.firecracker_version, Date.now() + spec.bootTimeoutMs);
  return vm;
}

/**
 * Spawn Firecracker in the run dir, its output (the guest console) to the console log. The VMM
 * must never outlive the supervisor (binary.ts). Under the jailer with another uid/gid the
 * kernel clears the death signal at the credential change; the supervisor's pid check covers
 * that case.
 */
function spawnFirecracker(fcArgv: string[], spec: BootSpec, env: Env): ReturnType<typeof Bun.spawn> {
  const argv = [...pdeathsigPrefix("KILL", env), ...fcArgv];
  mkdirSync(dirname(spec.consoleLogPath), { recursive: true });
  const logFd = openSync(spec.consoleLogPath, "a", 0o600);
  try {
    return Bun.spawn(argv, {
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
}

/**
 * Firecracker run directly. A template boot names the vsock socket and the data drive relative
 * to its cwd (the run dir; the data disk linked in there), so each clone, loading the same
 * snapshot in its own run dir, gets its own (template.ts).
 */
function planDirect(spec: BootSpec, fcBin: string, withConfig: boolean, template = false): LaunchPlan {
  const apiSock = join(spec.runDir, "fc.sock");
  const vsock = join(spec.runDir, TEMPLATE_VSOCK_PATH);
  const configHostPath = join(spec.runDir, "fc.json");
  let configPaths: LaunchPlan["configPaths"];
  if (template && spec.environment && spec.dataDiskPath) {
    const link = join(spec.runDir, TEMPLATE_DATA_DRIVE_PATH);
    rmSync(link, { force: true });
    symlinkSync(spec.dataDiskPath, link);
    configPaths = {
      kernel: spec.environment.kernelPath,
      rootfs: spec.environment.rootfsPath,
      dataDisk: TEMPLATE_DATA_DRIVE_PATH,
    };
  }
  return {
    argv: [fcBin, "--api-sock", apiSock, ...(withConfig ? ["--config-file", configHostPath] : [])],
    apiSock,
    vsock,
    configHostPath,
    configPaths,
    vsockInConfig: template ? TEMPLATE_VSOCK_PATH : vsock,
    snapshotInside: null,
  };
}

function planJailed(
  spec: BootSpec,
  fcBin: string,
  s: NonNullable<ReturnType<typeof jailerSettings>>,
  withConfig: boolean,
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
  const fcArgs = [
    "--api-sock",
    layout.inside.apiSock,
    ...(withConfig ? ["--config-file", layout.inside.config] : []),
  ];
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
    snapshotInside: { state: layout.inside.snapshotState, mem: layout.inside.snapshotMem },
    chownTo: { uid: s.uid, gid: s.gid },
    jail: layout,
  };
}

/** rename, or copy + remove across filesystems (a jail on another mount than the workspace). */
function moveFile(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch {
    copyFileSync(from, to);
    rmSync(from, { force: true });
  }
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
  /** Paused by saveState: the guest cannot answer Ctrl-Alt-Del any more. */
  private paused = false;

  constructor(
    private readonly proc: ReturnType<typeof Bun.spawn>,
    private readonly plan: LaunchPlan,
    private readonly consoleLogPath: string,
    /** A template boot: where `saveState` with `ignoreShared` writes the guest memory. */
    private readonly templateMemPath: string | null,
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

  /**
   * Resume from a snapshot on this fresh, unconfigured process: wait for the API socket, then
   * PUT /snapshot/load with resume_vm. Any failure kills Firecracker and is VMM_FAILED (the
   * caller then boots cold from the disk, src/manager/pause.ts).
   */
  async restore(statePath: string, deadlineMs: number): Promise<void> {
    const inside = this.plan.snapshotInside;
    const params = inside ? resumeLoadParams(inside.state, inside.mem) : resumeLoadParams(statePath);
    try {
      await this.waitForApi(deadlineMs);
      await this.api.loadSnapshot(params, { timeoutMs: Math.max(1000, deadlineMs - Date.now()) });
    } catch (err) {
      this.kill();
      await this.exited;
      throw new PyroError("VMM_FAILED", `firecracker resume failed: ${(err as Error).message}`, {
        details: {
          snapshotPath: params.snapshot_path,
          consoleTail: tailFile(this.consoleLogPath),
          ...(err instanceof PyroError ? { faultMessage: err.details?.faultMessage } : {}),
        },
        cause: err,
      });
    }
  }

  /**
   * Clone a template on this fresh, unconfigured process: the running Firecracker must be the
   * release that saved it (GET /), then the plan's calls (load paused, patch the data drive,
   * resume). Any failure kills Firecracker and is VMM_FAILED (the caller boots cold).
   */
  async clone(plan: ClonePlan, madeBy: string, deadlineMs: number): Promise<void> {
    try {
      const info = await this.waitForApi(deadlineMs);
      if (info.vmm_version !== madeBy) {
        throw new PyroError(
          "VMM_FAILED",
          `the template was saved by firecracker ${madeBy}, this is ${info.vmm_version}`,
        );
      }
      await runClonePlan(this.api, plan, { loadTimeoutMs: Math.max(1000, deadlineMs - Date.now()) });
    } catch (err) {
      this.kill();
      await this.exited;
      throw new PyroError("VMM_FAILED", `firecracker template restore failed: ${(err as Error).message}`, {
        details: {
          consoleTail: tailFile(this.consoleLogPath),
          ...(err instanceof PyroError ? { faultMessage: err.details?.faultMessage } : {}),
        },
        cause: err,
      });
    }
  }

  /** The API socket answers GET / (Firecracker is up), or why not. */
  private async waitForApi(deadlineMs: number): Promise<InstanceInfo> {
    for (;;) {
      if (this.hasExited)
        throw new PyroError("VMM_FAILED", "firecracker exited before its API socket answered");
      try {
        return await this.api.describeInstance();
      } catch (err) {
        if (Date.now() >= deadlineMs) {
          throw new PyroError("VMM_FAILED", "firecracker's API socket did not answer in time", {
            cause: err,
          });
        }
      }
      await Bun.sleep(20);
    }
  }

  /**
   * Pause: PATCH /vm Paused, then PUT /snapshot/create (Full) with the state at `path` and the
   * memory at `path + ".mem"` (snapshot.ts); both fsynced and hashed as one. The VM stays
   * paused until stop/kill. A template boot's save (`ignoreShared`) writes the memory to the
   * boot's `spec.memoryFile.path` instead (clones map it private; template.ts); only a template
   * boot takes it.
   */
  async saveState(
    path: string,
    deadlineMs: number,
    opts: { ignoreShared?: boolean } = {},
  ): Promise<{ bytes: number; sha256: string }> {
    if (opts.ignoreShared && !this.templateMemPath) {
      throw new PyroError(
        "INVALID_INPUT",
        "only a firecracker template boot (spec.memoryFile shared) saves with ignoreShared",
      );
    }
    if (this.hasExited) throw new PyroError("VMM_FAILED", "firecracker has exited");
    const hostState = path;
    const hostMem = opts.ignoreShared && this.templateMemPath ? this.templateMemPath : memoryFileOf(path);
    const inside = this.plan.snapshotInside;
    const jail = this.plan.jail;
    const written =
      inside && jail ? [hostPath(jail, inside.state), hostPath(jail, inside.mem)] : [hostState, hostMem];
    for (const f of written) rmSync(f, { force: true });
    await this.waitForApi(deadlineMs); // a pause right after spawn: the socket may not be bound yet
    await this.api.pause();
    this.paused = true;
    await this.api.createSnapshot(
      {
        snapshot_type: "Full",
        snapshot_path: inside?.state ?? hostState,
        mem_file_path: inside?.mem ?? hostMem,
      },
      { timeoutMs: Math.max(1000, deadlineMs - Date.now()) },
    );
    if (inside && jail) {
      moveFile(written[0]!, hostState);
      moveFile(written[1]!, hostMem);
    }
    return hashStateFiles([hostState, hostMem]);
  }

  /** Ctrl-Alt-Del (the guest reboots → Firecracker exits), then SIGKILL once timeoutMs is up. */
  async stop(timeoutMs: number): Promise<void> {
    if (this.hasExited) return;
    if (this.paused) {
      // A paused guest never sees Ctrl-Alt-Del; its state is saved (pause), so end it at once.
      this.kill();
      await this.exited;
      return;
    }
    // No API socket (yet), or the VM already going down, fails the ask: the kill covers it.
    await stopProcess(this.proc, this.exited, timeoutMs, () =>
      this.api.sendCtrlAltDel({ timeoutMs: Math.max(1, Math.min(2000, timeoutMs)) }),
    );
  }

  kill(): void {
    if (!this.hasExited) this.proc.kill("SIGKILL");
  }
}
