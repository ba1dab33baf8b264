/**
 * Strict valibot schemas for everything pyro sends to Firecracker, transcribed field by field
 * from Firecracker's published API definition:
 *
 *   Firecracker v1.14.4, `src/firecracker/swagger/firecracker.yaml` (info.version "1.14.4"),
 *   read from the copy at superfly/firecracker@01c0d7c769d5650d5587c77a08802df52b652f48 and
 *   cross-checked against upstream firecracker-microvm/firecracker@004d935399ba (1.17.0-dev):
 *   the fields below are identical in both, except where a comment says otherwise.
 *
 * Firecracker deserialises each body with serde `deny_unknown_fields` (e.g. MachineConfig in
 * src/vmm/src/vmm_config/machine_config.rs), so an unknown field is a hard error there; the
 * `--config-file` top level (`VmmConfig` in src/vmm/src/resources.rs) is NOT strict and would
 * silently ignore a misspelt key like `machine_config`. `v.strictObject` everywhere catches
 * both before a process is spawned.
 *
 * Constraints marked "swagger" are documented there; "impl" ones are enforced by Firecracker's
 * Rust code without a swagger keyword; "pyro" ones are ours.
 */
import * as v from "valibot";

/** Version the schemas are transcribed from; docs/firecracker.md repeats it. */
export const FIRECRACKER_API_VERSION = "1.14.4";

const int = v.pipe(v.number(), v.integer());
const nonNegInt = v.pipe(int, v.minValue(0));

/** swagger TokenBucket: required refill_time and size; all int64 with minimum 0. */
export const TokenBucket = v.strictObject({
  one_time_burst: v.optional(nonNegInt),
  refill_time: nonNegInt,
  size: nonNegInt,
});

/** swagger RateLimiter: two optional token buckets (bytes and operations). */
export const RateLimiter = v.strictObject({
  bandwidth: v.optional(TokenBucket),
  ops: v.optional(TokenBucket),
});

/** swagger BootSource: kernel_image_path required. */
export const BootSource = v.strictObject({
  kernel_image_path: v.pipe(v.string(), v.minLength(1)),
  boot_args: v.optional(v.string()),
  initrd_path: v.optional(v.string()),
});

/**
 * swagger Drive: drive_id and is_root_device required. No pattern is documented for
 * drive_id. For a virtio-block drive `path_on_host` and `is_read_only` are required and
 * `socket` omitted; a vhost-user-block drive is the reverse (swagger descriptions).
 */
export const Drive = v.pipe(
  v.strictObject({
    drive_id: v.pipe(v.string(), v.minLength(1)),
    partuuid: v.optional(v.string()),
    is_root_device: v.boolean(),
    cache_type: v.optional(v.picklist(["Unsafe", "Writeback"])), // default Unsafe
    is_read_only: v.optional(v.boolean()),
    path_on_host: v.optional(v.pipe(v.string(), v.minLength(1))),
    rate_limiter: v.optional(RateLimiter),
    io_engine: v.optional(v.picklist(["Sync", "Async"])), // default Sync
    socket: v.optional(v.string()),
  }),
  v.check(
    (d) =>
      d.socket === undefined
        ? d.path_on_host !== undefined && d.is_read_only !== undefined
        : d.path_on_host === undefined && d.is_read_only === undefined && d.io_engine === undefined,
    "a drive has either path_on_host + is_read_only (virtio-block) or socket (vhost-user-block)",
  ),
);

/** swagger CpuTemplate (deprecated there, accepted still). */
export const CpuTemplate = v.picklist(["C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None"]);

/**
 * swagger MachineConfiguration: vcpu_count (1..32) and mem_size_mib required.
 * 1.17.0-dev adds huge_pages "Transparent"; 1.14.4 knows only None and 2M.
 */
export const MachineConfiguration = v.pipe(
  v.strictObject({
    vcpu_count: v.pipe(int, v.minValue(1), v.maxValue(32)),
    // impl: machine_config.rs rejects 0 (InvalidMemorySize); swagger names no minimum.
    mem_size_mib: v.pipe(int, v.minValue(1)),
    smt: v.optional(v.boolean()),
    cpu_template: v.optional(CpuTemplate),
    track_dirty_pages: v.optional(v.boolean()),
    huge_pages: v.optional(v.picklist(["None", "2M"])),
  }),
  // swagger (PUT /machine-config): with SMT the vCPU count must be 1 or even.
  v.check(
    (m) => !m.smt || m.vcpu_count === 1 || m.vcpu_count % 2 === 0,
    "with smt, vcpu_count must be 1 or even",
  ),
  // swagger (PUT /machine-config): with 2M hugetlbfs pages the memory size must be even.
  v.check(
    (m) => m.huge_pages !== "2M" || m.mem_size_mib % 2 === 0,
    "with 2M huge pages, mem_size_mib must be even",
  ),
);

/**
 * swagger NetworkInterface: iface_id and host_dev_name required. (1.17.0-dev adds `mtu`;
 * 1.14.4 would reject it, so it is not here.)
 */
export const NetworkInterface = v.strictObject({
  iface_id: v.pipe(v.string(), v.minLength(1)),
  // impl: a Linux interface name, at most IFNAMSIZ-1 = 15 bytes (CHANGELOG 0.19.0).
  host_dev_name: v.pipe(v.string(), v.minLength(1), v.maxLength(15)),
  // impl: parsed as a MAC address "xx:xx:xx:xx:xx:xx"; swagger gives only `string`.
  guest_mac: v.optional(v.pipe(v.string(), v.regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/))),
  rx_rate_limiter: v.optional(RateLimiter),
  tx_rate_limiter: v.optional(RateLimiter),
});

/**
 * swagger Vsock: guest_cid (minimum 3) and uds_path required; vsock_id deprecated.
 * CIDs are u32 and 0xFFFFFFFF is VMADDR_CID_ANY (impl/pyro upper bound).
 */
export const Vsock = v.strictObject({
  guest_cid: v.pipe(int, v.minValue(3), v.maxValue(0xfffffffe)),
  uds_path: v.pipe(v.string(), v.minLength(1)),
  vsock_id: v.optional(v.string()),
});

/** swagger Logger: all optional; level is case-insensitive there, pyro sends the canonical case. */
export const Logger = v.strictObject({
  level: v.optional(v.picklist(["Error", "Warning", "Info", "Debug", "Trace", "Off"])),
  log_path: v.optional(v.string()),
  show_level: v.optional(v.boolean()),
  show_log_origin: v.optional(v.boolean()),
  module: v.optional(v.string()),
});

/** swagger Metrics: metrics_path required. */
export const Metrics = v.strictObject({ metrics_path: v.pipe(v.string(), v.minLength(1)) });

/** swagger EntropyDevice (virtio-rng): only an optional rate limiter. */
export const EntropyDevice = v.strictObject({ rate_limiter: v.optional(RateLimiter) });

/**
 * The `--config-file` document (`VmmConfig`, kebab-case keys). In `VmmConfig` `boot-source`
 * and `drives` have no serde default, so both are required; `network-interfaces` defaults to
 * []. Keys pyro never sends (balloon, cpu-config, mmds-config, pmem, memory-hotplug) are left
 * out on purpose: strict here means "only what pyro means to send".
 */
export const FirecrackerConfig = v.strictObject({
  "boot-source": BootSource,
  drives: v.array(Drive),
  "machine-config": v.optional(MachineConfiguration),
  "network-interfaces": v.optional(v.array(NetworkInterface)),
  vsock: v.optional(Vsock),
  logger: v.optional(Logger),
  metrics: v.optional(Metrics),
  entropy: v.optional(EntropyDevice),
});

// ---- runtime API request bodies ----

/** swagger Vm (PATCH /vm). */
export const VmState = v.strictObject({ state: v.picklist(["Paused", "Resumed"]) });

/** swagger SnapshotCreateParams (PUT /snapshot/create): both paths required; type defaults to Full. */
export const SnapshotCreateParams = v.strictObject({
  mem_file_path: v.pipe(v.string(), v.minLength(1)),
  snapshot_path: v.pipe(v.string(), v.minLength(1)),
  snapshot_type: v.optional(v.picklist(["Full", "Diff"])),
});

/**
 * swagger PartialDrive (PATCH /drives/{drive_id}, "post-boot only"; after a snapshot load the
 * VM counts as booted): drive_id required; path_on_host swaps a virtio-block drive's backing
 * file, rate_limiter replaces its limiter.
 */
export const PartialDrive = v.strictObject({
  drive_id: v.pipe(v.string(), v.minLength(1)),
  path_on_host: v.optional(v.pipe(v.string(), v.minLength(1))),
  rate_limiter: v.optional(RateLimiter),
});

/** swagger MemoryBackend. */
export const MemoryBackend = v.strictObject({
  backend_type: v.picklist(["File", "Uffd"]),
  backend_path: v.pipe(v.string(), v.minLength(1)),
});

/** swagger NetworkOverride: swap a net device's tap on restore. */
export const NetworkOverride = v.strictObject({
  iface_id: v.string(),
  host_dev_name: v.pipe(v.string(), v.minLength(1), v.maxLength(15)),
});

/**
 * swagger SnapshotLoadParams (PUT /snapshot/load): snapshot_path required and exactly one of
 * mem_file_path (deprecated) / mem_backend. Left out: `clock_realtime` and `vsock_override`,
 * which the 1.17.0-dev definition has and a 1.14 Firecracker may reject as unknown.
 * `network_overrides` exists from Firecracker 1.13 on (an older one rejects the field), so
 * pyro sends it only when a tap name really changes (template clones, template.ts).
 */
export const SnapshotLoadParams = v.pipe(
  v.strictObject({
    snapshot_path: v.pipe(v.string(), v.minLength(1)),
    mem_file_path: v.optional(v.string()),
    mem_backend: v.optional(MemoryBackend),
    enable_diff_snapshots: v.optional(v.boolean()), // deprecated alias of track_dirty_pages
    track_dirty_pages: v.optional(v.boolean()),
    resume_vm: v.optional(v.boolean()),
    network_overrides: v.optional(v.array(NetworkOverride)),
  }),
  v.check(
    (p) => (p.mem_file_path === undefined) !== (p.mem_backend === undefined),
    "exactly one of mem_file_path and mem_backend",
  ),
);

/** swagger InstanceActionInfo (PUT /actions). */
export const InstanceActionInfo = v.strictObject({
  action_type: v.picklist(["FlushMetrics", "InstanceStart", "SendCtrlAltDel"]),
});

// ---- responses: read leniently (a newer Firecracker may add fields) ----

/** swagger InstanceInfo (GET /). */
export const InstanceInfo = v.object({
  app_name: v.string(),
  id: v.string(),
  state: v.picklist(["Not started", "Running", "Paused"]),
  vmm_version: v.string(),
});

/** swagger Error: every 4xx/5xx body. */
export const FaultBody = v.object({ fault_message: v.optional(v.string()) });

export type FirecrackerConfig = v.InferOutput<typeof FirecrackerConfig>;
export type DriveConfig = v.InferOutput<typeof Drive>;
export type NetworkInterfaceConfig = v.InferOutput<typeof NetworkInterface>;
export type SnapshotCreateParams = v.InferOutput<typeof SnapshotCreateParams>;
export type SnapshotLoadParams = v.InferOutput<typeof SnapshotLoadParams>;
export type PartialDrive = v.InferOutput<typeof PartialDrive>;
export type InstanceActionType = v.InferOutput<typeof InstanceActionInfo>["action_type"];
export type InstanceInfo = v.InferOutput<typeof InstanceInfo>;
