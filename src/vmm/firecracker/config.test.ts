import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { PyroError } from "../../protocol/errors.ts";
import type { BootSpec } from "../types.ts";
import { buildFirecrackerConfig, firecrackerKernelArgs, parseConfig } from "./config.ts";
import { MachineConfiguration, SnapshotLoadParams, Vsock } from "./schema.ts";

function sampleSpec(over: Partial<BootSpec> = {}): BootSpec {
  return {
    workspaceId: "w-1234",
    runDir: "/pyro/workspaces/w-1234/run",
    workspaceDir: "/pyro/workspaces/w-1234/files",
    dataDiskPath: "/pyro/workspaces/w-1234/disk.ext4",
    environment: {
      name: "debian:12",
      version: "1",
      kernelPath: "/pyro/environments/debian-12/1/vmlinux",
      rootfsPath: "/pyro/environments/debian-12/1/rootfs.ext4",
    },
    vcpuCount: 2,
    memMib: 512,
    network: false,
    consoleLogPath: "/pyro/workspaces/w-1234/logs/console.log",
    bootTimeoutMs: 30_000,
    ...over,
  };
}

const vsockUdsPath = "/pyro/workspaces/w-1234/run/vsock.sock";

function config(spec = sampleSpec(), tap?: Parameters<typeof firecrackerKernelArgs>[1]) {
  return buildFirecrackerConfig(spec, { vsockUdsPath, tap, kernelArgs: firecrackerKernelArgs(spec, tap) });
}

function invalid(fn: () => unknown): PyroError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PyroError);
    expect((err as PyroError).code).toBe("INVALID_INPUT");
    return err as PyroError;
  }
  throw new Error("expected INVALID_INPUT");
}

describe("buildFirecrackerConfig", () => {
  test("a sample BootSpec gives the full document, which the strict schema accepts", () => {
    const c = config();
    expect(c).toEqual({
      "boot-source": {
        kernel_image_path: "/pyro/environments/debian-12/1/vmlinux",
        boot_args: firecrackerKernelArgs(sampleSpec()).join(" "),
      },
      drives: [
        {
          drive_id: "rootfs",
          path_on_host: "/pyro/environments/debian-12/1/rootfs.ext4",
          is_root_device: true,
          is_read_only: true,
        },
        {
          drive_id: "data",
          path_on_host: "/pyro/workspaces/w-1234/disk.ext4",
          is_root_device: false,
          is_read_only: false,
          cache_type: "Writeback",
        },
      ],
      "machine-config": { vcpu_count: 2, mem_size_mib: 512, smt: false, track_dirty_pages: false },
      "network-interfaces": [],
      vsock: { guest_cid: 3, uds_path: vsockUdsPath },
      entropy: {},
    });
    // What is written to disk and read back still validates.
    expect(parseConfig(JSON.parse(JSON.stringify(c)))).toEqual(c);
  });

  test("without a data disk only the read-only rootfs is attached", () => {
    const c = config(sampleSpec({ dataDiskPath: undefined }));
    expect(c.drives.map((d) => d.drive_id)).toEqual(["rootfs"]);
  });

  test("a network interface only when the spec asks for network AND a tap exists", () => {
    const tap = { hostDevName: "pyrotap0", guestMac: "06:00:ac:10:00:02" };
    expect(config(sampleSpec({ network: true }), tap)["network-interfaces"]).toEqual([
      { iface_id: "eth0", host_dev_name: "pyrotap0", guest_mac: "06:00:ac:10:00:02" },
    ]);
    expect(config(sampleSpec({ network: true }))["network-interfaces"]).toEqual([]);
    expect(config(sampleSpec({ network: false }), tap)["network-interfaces"]).toEqual([]);
  });

  test("spec values Firecracker would refuse are refused here", () => {
    invalid(() => config(sampleSpec({ vcpuCount: 33 })));
    invalid(() => config(sampleSpec({ vcpuCount: 0 })));
    invalid(() => config(sampleSpec({ memMib: 0 })));
    invalid(() => config(sampleSpec({ memMib: 1.5 })));
    invalid(() => buildFirecrackerConfig(sampleSpec(), { vsockUdsPath, guestCid: 2, kernelArgs: [] }));
    invalid(() =>
      config(sampleSpec({ network: true }), {
        hostDevName: "a-tap-name-that-is-too-long",
        guestMac: "06:00:00:00:00:01",
      }),
    );
  });

  test("no environment is INVALID_INPUT", () => {
    const err = invalid(() => config(sampleSpec({ environment: null })));
    expect(err.message).toContain("environment");
  });
});

describe("strict schema", () => {
  const good = () => JSON.parse(JSON.stringify(config())) as Record<string, any>;

  test("unknown fields are rejected at every level, like Firecracker's deny_unknown_fields", () => {
    const top = good();
    top.machine_config = top["machine-config"]; // Firecracker itself would silently ignore this one
    expect(invalid(() => parseConfig(top)).message).toContain("machine_config");

    const drive = good();
    drive.drives[0].readonly = true;
    expect(invalid(() => parseConfig(drive)).message).toContain("drives.0.readonly");

    const mc = good();
    mc["machine-config"].cpus = 2;
    invalid(() => parseConfig(mc));
  });

  test("wrong types and missing required fields are rejected", () => {
    const t = good();
    t["machine-config"].vcpu_count = "2";
    expect(invalid(() => parseConfig(t)).message).toContain("machine-config.vcpu_count");

    const ro = good();
    ro.drives[0].is_read_only = "yes";
    invalid(() => parseConfig(ro));

    const noBoot = good();
    delete noBoot["boot-source"];
    invalid(() => parseConfig(noBoot));

    const noDrives = good();
    delete noDrives.drives; // VmmConfig has no serde default for drives
    invalid(() => parseConfig(noDrives));

    const noPath = good();
    delete noPath.drives[1].path_on_host; // virtio-block needs it
    invalid(() => parseConfig(noPath));
  });

  test("documented constraints", () => {
    expect(v.is(MachineConfiguration, { vcpu_count: 32, mem_size_mib: 128 })).toBe(true);
    expect(v.is(MachineConfiguration, { vcpu_count: 3, mem_size_mib: 128, smt: true })).toBe(false);
    expect(v.is(MachineConfiguration, { vcpu_count: 4, mem_size_mib: 128, smt: true })).toBe(true);
    expect(v.is(MachineConfiguration, { vcpu_count: 1, mem_size_mib: 129, huge_pages: "2M" })).toBe(false);
    expect(v.is(MachineConfiguration, { vcpu_count: 1, mem_size_mib: 128, huge_pages: "Transparent" })).toBe(
      false,
    );
    expect(v.is(Vsock, { guest_cid: 3, uds_path: "/v.sock" })).toBe(true);
    expect(v.is(Vsock, { guest_cid: 2, uds_path: "/v.sock" })).toBe(false);
    expect(v.is(SnapshotLoadParams, { snapshot_path: "/s" })).toBe(false); // needs one memory source
    expect(v.is(SnapshotLoadParams, { snapshot_path: "/s", mem_file_path: "/m" })).toBe(true);
  });
});

describe("firecrackerKernelArgs", () => {
  test("console, reboot/panic behaviour, init and CRNG; root= is left to Firecracker", () => {
    const args = firecrackerKernelArgs(sampleSpec());
    for (const a of [
      "console=ttyS0",
      "reboot=k",
      "panic=-1",
      "init=/sbin/pyro-init",
      "random.trust_cpu=on",
    ]) {
      expect(args).toContain(a);
    }
    // Firecracker appends `root=/dev/vda ro` for the read-only root drive; twice would only confuse.
    expect(args.some((a) => a.startsWith("root="))).toBe(false);
    // Ctrl-Alt-Del needs the i8042 device, so it must not be switched off.
    expect(args).not.toContain("i8042.nokbd");
  });

  test("extra args come last so they can override", () => {
    const args = firecrackerKernelArgs(sampleSpec({ extraKernelArgs: ["loglevel=7", "pyro.debug=1"] }));
    expect(args.slice(-2)).toEqual(["loglevel=7", "pyro.debug=1"]);
  });

  test("static guest addressing only with network and a tap that carries it", () => {
    const tap = {
      hostDevName: "pyrotap0",
      guestMac: "06:00:ac:10:00:02",
      guestIp: "172.16.0.2",
      gatewayIp: "172.16.0.1",
      netmask: "255.255.255.252",
      dns: "1.1.1.1",
    };
    const args = firecrackerKernelArgs(sampleSpec({ network: true }), tap);
    expect(args).toContain("ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off");
    expect(args).toContain("pyro.dns=1.1.1.1");
    expect(firecrackerKernelArgs(sampleSpec({ network: false }), tap).some((a) => a.startsWith("ip="))).toBe(
      false,
    );
  });
});
