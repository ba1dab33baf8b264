/**
 * Pure builders for the QEMU command line. The machine shape is the one measured to boot
 * reliably under TCG (QEMU 7.2, `-M microvm,acpi=off`, see docs/qemu.md); every choice that
 * was measured is commented where it is made.
 */
import { AGENT_PORT_NAME } from "../../protocol/transport.ts";
import type { BootSpec } from "../types.ts";

export type QemuAccelerator = "kvm" | "tcg";

export interface QemuArgvOptions {
  accelerator: QemuAccelerator;
  qemuBin: string;
  agentSocketPath: string;
  qmpSocketPath: string;
  /** Host TSC frequency; passed to TCG guests as `tsc_early_khz` (see qemuKernelArgs). */
  hostTscKhz?: number;
  /** CPU model override (the KVM probe may find that only a named model works). */
  cpuModel?: string;
}

/** Guest addressing under QEMU user-mode networking (slirp's fixed 10.0.2.0/24 layout). */
export const USER_NET = {
  guest: "10.0.2.15",
  gateway: "10.0.2.2",
  netmask: "255.255.255.0",
  dns: "10.0.2.3",
} as const;

/** The virtio-serial port name the guest agent looks for in /sys/class/virtio-ports. */
export { AGENT_PORT_NAME };

/** QEMU option values are comma-separated: a literal comma in a path is written twice. */
export function qemuOptValue(value: string): string {
  return value.replaceAll(",", ",,");
}

/** The kernel command line (without the `virtio_mmio.device=` words QEMU appends itself). */
export function qemuKernelArgs(spec: BootSpec, accelerator: QemuAccelerator, hostTscKhz?: number): string[] {
  const args = [
    "console=ttyS0",
    // Panic → reboot → QEMU exits (-no-reboot): a dead guest never lingers as a live VMM.
    "panic=-1",
    // Reboot by triple fault. microvm,acpi=off has neither ACPI reset nor an i8042, so the
    // kernel's default sequence spent 6–8 s (TCG) before QEMU saw the reset; this takes ~30 ms.
    "reboot=t",
    // The environment rootfs is shared by every workspace: mounted read-only, always.
    "root=/dev/vda",
    "ro",
    "init=/sbin/pyro-init",
    // Bun's start waits for the kernel CRNG; trusting RDRAND saved ~1.4 s per boot (measured, TCG).
    "random.trust_cpu=on",
    // Serial output is slow under emulation; warnings and errors still reach the log.
    // A later `loglevel=7` in extraKernelArgs overrides it for debugging.
    "quiet",
  ];
  // Under TCG the guest TSC runs at the host's rate; telling the kernel skips a calibration
  // that hung 1 in 4 ACPI boots under TCG (fixed in 6 of 6). Under KVM, kvmclock/CPUID say it.
  if (accelerator === "tcg" && hostTscKhz && hostTscKhz > 0) args.push(`tsc_early_khz=${hostTscKhz}`);
  if (spec.network) {
    // A tap network's static /30 (src/vmm/net/tap.ts), else slirp's fixed layout.
    const a = spec.tap ?? { guestIp: USER_NET.guest, gatewayIp: USER_NET.gateway, ...USER_NET };
    // Kernel IP autoconfig: client::gateway:netmask:hostname:device:autoconf (no DHCP wait).
    args.push(`ip=${a.guestIp}::${a.gatewayIp}:${a.netmask}::eth0:off`);
    // The guest init writes /etc/resolv.conf from this.
    args.push(`pyro.dns=${a.dns}`);
  }
  args.push(...(spec.extraKernelArgs ?? []));
  return args;
}

/**
 * The guest RAM's backend id. It is QEMU's own default for microvm (the id `-m` alone
 * gives), so the RAMBlock is named as before and machine states saved by a pyro that
 * passed only `-m` still load.
 */
export const RAM_ID = "microvm.ram";

/**
 * The guest RAM object. Cold boots and resumes: anonymous memory. Template boots
 * (src/manager/templates.ts): the RAM is the template's file, mapped shared, so the guest's
 * pages land in it; clones map the same file private (copy-on-write: every clone reads the
 * template's pages from the one page cache and copies only what it writes) and load the
 * device state with `x-ignore-shared` (migrate.ts), the RAM not being in the stream.
 */
export function qemuMemoryArgs(spec: BootSpec): string[] {
  const size = `size=${spec.memMib}M`;
  const f = spec.memoryFile;
  if (!f) return ["-object", `memory-backend-ram,id=${RAM_ID},${size}`];
  return [
    "-object",
    `memory-backend-file,id=${RAM_ID},${size},mem-path=${qemuOptValue(f.path)},share=${f.shared ? "on" : "off"}`,
  ];
}

/**
 * TCG's translation buffer (MiB) for a boot: `-accel tcg,tb-size=`. QEMU 7.2 defaults to
 * 1 GiB (measured: 231 of QEMU's 441 MiB RSS). The buffer fills with host code translated
 * since QEMU started (or restored), is flushed and refilled from its start when full, and
 * every page it touched stays resident (anonymous memory, never given back): on an idle
 * workspace it is QEMU's largest item. Measured on template clones (docs/templates.md "RAM"),
 * PSS of QEMU per idle clone, 10 side by side: tb-size 64 → 91 MiB (50 MiB of it the buffer),
 * 32 → 70, 16 → 51, 8 → 42; but a smaller buffer is retranslated over and over: QEMU CPU
 * time of an `exec true` round trip 220 ms at 64 vs 620 ms at 32 (sha256 of 20 MB 1.9 s vs
 * 2.5 s; git init+commit 1.7 s vs 2.0 s), at 16: 1.1 s, 3.7 s and 5.1 s. The issue asks for a smaller buffer only where it costs no speed, so:
 * - making a template: a short-lived machine whose boot translates the most: TEMPLATE_TB_MIB;
 * - every other boot (cold, template clone, resume of a paused machine) becomes a workspace
 *   that runs agents' commands: WORKSPACE_TB_MIB, the same 64 (a workspace's exec speed is
 *   worth more than ~20-40 MiB of host RAM under TCG; KVM has no such buffer).
 * The size is not part of any saved state: a clone may use another size than its template
 * was made with, and the template key leaves it out.
 */
export const TEMPLATE_TB_MIB = 64;
export const WORKSPACE_TB_MIB = 64;
export function tcgTbSizeMib(spec: BootSpec): number {
  return spec.memoryFile?.shared ? TEMPLATE_TB_MIB : WORKSPACE_TB_MIB;
}

export function buildQemuArgv(spec: BootSpec, opts: QemuArgvOptions): string[] {
  const env = spec.environment;
  if (!env) throw new Error("qemu backend needs an environment (kernel + rootfs)");
  const o = qemuOptValue;
  const argv = [
    opts.qemuBin,
    "-name",
    `pyro-${spec.workspaceId}`,
    // microvm: no PCI, no firmware. acpi=off makes QEMU describe the virtio-mmio devices on
    // the kernel command line (MP table); that path never hung in ~20 TCG boots.
    // The guest RAM is an explicit backend object (qemuMemoryArgs) so its RAMBlock has one
    // name for every kind of boot: cold, template, clone and pause/resume.
    "-M",
    `microvm,acpi=off,memory-backend=${RAM_ID}`,
    ...qemuMemoryArgs(spec),
    "-accel",
    // TCG's translation cache: its size per kind of boot, see tcgTbSizeMib.
    opts.accelerator === "tcg" ? `tcg,tb-size=${tcgTbSizeMib(spec)}` : opts.accelerator,
    "-cpu",
    opts.cpuModel ?? (opts.accelerator === "kvm" ? "host" : "max"),
    "-m",
    String(spec.memMib),
    "-smp",
    String(spec.vcpuCount),
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    // A guest reset (agent poweroff or panic) ends the QEMU process.
    "-no-reboot",
    // The console goes to a file through a chardev so the path may hold any character.
    "-chardev",
    `file,id=console,path=${o(spec.consoleLogPath)}`,
    "-serial",
    "chardev:console",
    "-kernel",
    env.kernelPath,
    "-append",
    qemuKernelArgs(spec, opts.accelerator, opts.hostTscKhz).join(" "),
    // /dev/vda: the shared rootfs. readonly=on so no guest can change it; locking off
    // because QEMU would otherwise lock the image and a writer elsewhere (or an older
    // QEMU's exclusive lock) could refuse the second VM.
    "-drive",
    `id=root,file=${o(env.rootfsPath)},format=raw,if=none,readonly=on,file.locking=off`,
    "-device",
    "virtio-blk-device,drive=root",
  ];
  if (spec.dataDiskPath) {
    // /dev/vdb: the workspace's own sparse disk; discard=unmap keeps it sparse after deletes.
    argv.push(
      "-drive",
      `id=data,file=${o(spec.dataDiskPath)},format=raw,if=none,discard=unmap`,
      "-device",
      "virtio-blk-device,drive=data",
    );
  }
  argv.push(
    // The agent channel: one virtio-serial port, host side a UNIX socket QEMU listens on.
    // wait=off: QEMU boots without waiting for the supervisor to connect.
    "-device",
    "virtio-serial-device",
    "-chardev",
    `socket,id=agent,path=${o(opts.agentSocketPath)},server=on,wait=off`,
    "-device",
    `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
    // QMP for quit/status; a chardev (not -qmp unix:) so commas in the path are escapable.
    "-chardev",
    `socket,id=qmp,path=${o(opts.qmpSocketPath)},server=on,wait=off`,
    "-mon",
    "chardev=qmp,mode=control",
  );
  if (spec.network && spec.tap) {
    // The tap pyro created and filters (src/vmm/net); QEMU only opens it: no helper scripts.
    argv.push(
      "-netdev",
      `tap,id=n0,ifname=${spec.tap.hostDevName},script=no,downscript=no`,
      "-device",
      `virtio-net-device,netdev=n0,mac=${spec.tap.guestMac}`,
    );
  } else if (spec.network) {
    // User-mode networking: no root, no tap, outbound only; slirp answers DNS on 10.0.2.3.
    argv.push("-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0");
  }
  // Entropy for guests whose CPU model lacks RDRAND (trust_cpu then has nothing to trust).
  // Last, so it never shifts the block devices' order.
  argv.push("-device", "virtio-rng-device");
  // Resume: the same machine waits for its saved state (migrate-incoming, src/vmm/qemu/migrate.ts).
  if (spec.restoreFrom) argv.push("-incoming", "defer");
  return argv;
}
