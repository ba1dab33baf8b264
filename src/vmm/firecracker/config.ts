/**
 * Pure builders for Firecracker's `--config-file` JSON and the guest kernel command line.
 * Disk layout (same as the QEMU backend): /dev/vda = the environment rootfs, shared by every
 * workspace and attached read-only; /dev/vdb = the workspace's own writable data disk.
 */
import * as v from "valibot";
import { PyroError } from "../../protocol/errors.ts";
import type { BootSpec } from "../types.ts";
import { FirecrackerConfig } from "./schema.ts";

/** Guest CID of the only vsock device. Each VM has its own device, so every VM may use 3. */
export const DEFAULT_GUEST_CID = 3;

/** The tap device the net module created for this VM, plus the guest's addressing. */
export interface TapDevice {
  hostDevName: string;
  guestMac: string;
  /** Static guest addressing, passed as kernel IP autoconfig (no DHCP wait in the guest). */
  guestIp?: string;
  gatewayIp?: string;
  netmask?: string;
  dns?: string;
}

export interface FirecrackerConfigOptions {
  /** Host path Firecracker listens on for host-initiated vsock connections. */
  vsockUdsPath: string;
  guestCid?: number;
  /** Only used when `spec.network` is true. */
  tap?: TapDevice;
  kernelArgs: string[];
  /**
   * Paths as Firecracker sees them, when they differ from the host's (the jailer's chroot).
   * Defaults to the paths in `spec`.
   */
  paths?: { kernel: string; rootfs: string; dataDisk?: string };
}

/**
 * The kernel command line. Firecracker itself appends `root=/dev/vda ro` for the drive
 * marked `is_root_device` + `is_read_only` (and, for MMIO devices, `virtio_mmio.device=`
 * words), so neither is repeated here.
 */
export function firecrackerKernelArgs(spec: BootSpec, tap?: TapDevice): string[] {
  const args = [
    "console=ttyS0",
    // Reboot through the keyboard controller: Firecracker exits on that reset, so a guest
    // poweroff/reboot or a panic (panic=-1: reboot at once) never leaves a live VMM behind.
    "reboot=k",
    "panic=-1",
    "init=/sbin/pyro-init",
    // Bun's start waits for the kernel CRNG; trusting RDRAND saved ~1.4 s per boot (measured).
    "random.trust_cpu=on",
    // Skip the i8042 probing (tens of ms) but keep the device: SendCtrlAltDel needs it
    // (Firecracker docs/api_requests/actions.md).
    "i8042.noaux",
    "i8042.nomux",
    "i8042.nopnp",
    "i8042.dumbkbd",
    // The 8250 console is slow; warnings and errors still reach the log. A later
    // `loglevel=7` in extraKernelArgs overrides it for debugging.
    "quiet",
  ];
  if (spec.network && tap?.guestIp) {
    // Kernel IP autoconfig: client::gateway:netmask:hostname:device:autoconf.
    args.push(`ip=${tap.guestIp}::${tap.gatewayIp ?? ""}:${tap.netmask ?? ""}::eth0:off`);
    if (tap.dns) args.push(`pyro.dns=${tap.dns}`); // the guest init writes /etc/resolv.conf from it
  }
  args.push(...(spec.extraKernelArgs ?? []));
  return args;
}

/** Build and validate the `--config-file` document; throws INVALID_INPUT on anything off. */
export function buildFirecrackerConfig(spec: BootSpec, opts: FirecrackerConfigOptions): FirecrackerConfig {
  const env = spec.environment;
  if (!env) {
    throw new PyroError("INVALID_INPUT", "the firecracker backend needs an environment (kernel + rootfs)");
  }
  const paths = opts.paths ?? { kernel: env.kernelPath, rootfs: env.rootfsPath, dataDisk: spec.dataDiskPath };
  const drives: unknown[] = [
    // is_root_device puts it first (/dev/vda) and makes Firecracker add `root=/dev/vda ro`.
    { drive_id: "rootfs", path_on_host: paths.rootfs, is_root_device: true, is_read_only: true },
  ];
  if (spec.dataDiskPath) {
    drives.push({
      drive_id: "data",
      path_on_host: paths.dataDisk ?? spec.dataDiskPath,
      is_root_device: false,
      is_read_only: false,
      // The default "Unsafe" ignores the guest's flushes; workspace data must survive a
      // host crash, so flushes become fsync on the host.
      cache_type: "Writeback",
    });
  }
  const config = {
    "boot-source": { kernel_image_path: paths.kernel, boot_args: opts.kernelArgs.join(" ") },
    drives,
    "machine-config": {
      vcpu_count: spec.vcpuCount,
      mem_size_mib: spec.memMib,
      smt: false,
      track_dirty_pages: false, // pyro takes full snapshots only
    },
    "network-interfaces":
      spec.network && opts.tap
        ? [{ iface_id: "eth0", host_dev_name: opts.tap.hostDevName, guest_mac: opts.tap.guestMac }]
        : [],
    vsock: { guest_cid: opts.guestCid ?? DEFAULT_GUEST_CID, uds_path: opts.vsockUdsPath },
    // virtio-rng: seeds the guest CRNG even where RDRAND is hidden from the guest.
    entropy: {},
  };
  return parseConfig(config);
}

/** Validate any config object against the strict schema (exported for tests and callers). */
export function parseConfig(config: unknown): FirecrackerConfig {
  const result = v.safeParse(FirecrackerConfig, config);
  if (result.success) return result.output;
  const issues = result.issues.map((i) => `${v.getDotPath(i) ?? "(root)"}: ${i.message}`);
  throw new PyroError("INVALID_INPUT", `invalid firecracker config: ${issues.join("; ")}`, {
    details: { issues },
  });
}
