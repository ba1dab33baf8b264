/**
 * The backend interface: boot a machine that runs the pyro agent, then hand back a byte
 * channel to it. Everything backend-specific (argv, config JSON, sockets) stays behind it.
 */
import type { ByteChannel } from "../protocol/channel.ts";
import type { TapNet } from "./net/tap.ts";

/** The agent channel type is the protocol's (re-exported for backend code). */
export type { ByteChannel };

export type BackendName = "firecracker" | "qemu" | "host";
export type Accelerator = "kvm" | "tcg" | null;

/** Files that make an environment bootable (see src/env). */
export interface EnvironmentArtifacts {
  name: string; // e.g. "debian:12"
  version: string;
  kernelPath: string; // uncompressed ELF vmlinux
  rootfsPath: string; // ext4, attached read-only
}

export interface BootSpec {
  workspaceId: string;
  /** Directory for sockets, pid files, console log (exists, mode 0700). */
  runDir: string;
  /** host backend: directory served as /workspace. */
  workspaceDir: string;
  /** guest backends: the sparse writable ext4 disk the guest overlays (/workspace + upper layer). */
  dataDiskPath?: string;
  /**
   * The data disk is only a placeholder holding the device position a VM template was saved
   * with (a one-shot run restored from a template): the guest is told it has none.
   */
  dataDiskPlaceholder?: boolean;
  environment: EnvironmentArtifacts | null;
  vcpuCount: number;
  memMib: number;
  network: boolean;
  /**
   * With `network`: the tap pyro created for this machine (src/vmm/net). Absent: QEMU uses
   * user-mode networking; Firecracker has no network without one.
   */
  tap?: TapNet;
  /** Where the guest console (serial) is written. */
  consoleLogPath: string;
  /** Absolute path of the pyro-agent executable (host backend runs it directly). */
  agentPath?: string;
  /** Extra kernel command line words (appended). */
  extraKernelArgs?: string[];
  /** Deadline for the machine to come up, milliseconds. */
  bootTimeoutMs: number;
  /**
   * Resume instead of boot: a machine state file written by `VmHandle.saveState` with this
   * same spec (verified by the caller). Only backends with `saveState` accept it.
   */
  restoreFrom?: string;
  /**
   * A VM template's memory (src/manager/templates.ts). QEMU: the guest RAM is this file
   * instead of anonymous memory; `shared`: the template boot (guest writes land in the file);
   * not shared: a clone (private copy-on-write mapping), with `restoreFrom` the template's
   * device state, loaded without RAM (`x-ignore-shared`). Firecracker: `shared` is a template
   * boot whose snapshot (`saveState` with `ignoreShared`) writes its memory to this path; not
   * shared is a clone loading the snapshot `restoreFrom` with this file mapped private
   * (src/vmm/firecracker/template.ts).
   */
  memoryFile?: { path: string; shared: boolean };
}

export interface VmHandle {
  readonly backend: BackendName;
  readonly accelerator: Accelerator;
  /** pid of the VMM (or of the host agent). */
  readonly pid: number;
  /** Open the agent channel (backend-specific transport). Retries until the deadline. */
  connect(deadlineMs: number): Promise<ByteChannel>;
  /** Ask for a clean shutdown (agent poweroff is done by the caller first), then wait up to timeoutMs, then kill. */
  stop(timeoutMs: number): Promise<void>;
  kill(): void;
  /**
   * Stop the guest and write its full state (RAM + devices) to `path` (pause). The VMM keeps
   * running, stopped, until `stop`/`kill`. Absent on backends that cannot (host).
   * `ignoreShared`: leave RAM in a shared memory file out of the stream (a template's save).
   */
  saveState?(
    path: string,
    deadlineMs: number,
    opts?: { ignoreShared?: boolean },
  ): Promise<{ bytes: number; sha256: string }>;
  /**
   * The VMM's run state (QEMU: query-status `status`, e.g. running, paused, io-error,
   * guest-panicked). Absent on backends that cannot tell.
   */
  runState?(): Promise<string>;
  /**
   * Continue a guest the VMM halted on a recoverable error (QEMU: `cont` after io-error; the
   * failed writes are retried). Absent on backends that cannot.
   */
  continueVm?(): Promise<void>;
  /** Resolves with the VMM's exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
}

export interface Backend {
  readonly name: BackendName;
  boot(spec: BootSpec): Promise<VmHandle>;
}
