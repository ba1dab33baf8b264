import { describe, expect, test } from "bun:test";
import type { BootSpec } from "../types.ts";
import {
  buildQemuArgv,
  qemuKernelArgs,
  qemuOptValue,
  TEMPLATE_TB_MIB,
  tcgTbSizeMib,
  WORKSPACE_TB_MIB,
} from "./argv.ts";

function spec(over: Partial<BootSpec> = {}): BootSpec {
  return {
    workspaceId: "w1",
    runDir: "/run/w1",
    workspaceDir: "/ws/w1",
    dataDiskPath: "/ws/w1/disk.ext4",
    environment: {
      name: "debian:12",
      version: "1",
      kernelPath: "/env/vmlinux",
      rootfsPath: "/env/rootfs.ext4",
    },
    vcpuCount: 2,
    memMib: 512,
    network: false,
    consoleLogPath: "/ws/w1/logs/console.log",
    bootTimeoutMs: 30_000,
    ...over,
  };
}

const base = {
  qemuBin: "/usr/bin/qemu-system-x86_64",
  agentSocketPath: "/run/w1/agent.sock",
  qmpSocketPath: "/run/w1/qmp.sock",
};

/** The value following `flag`, for every occurrence. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));
}

describe("buildQemuArgv", () => {
  test("machine, memory and the no-surprises flags", () => {
    const argv = buildQemuArgv(spec(), { ...base, accelerator: "tcg" });
    expect(argv[0]).toBe(base.qemuBin);
    expect(values(argv, "-M")).toEqual(["microvm,acpi=off,memory-backend=microvm.ram"]);
    expect(values(argv, "-m")).toEqual(["512"]);
    expect(values(argv, "-smp")).toEqual(["2"]);
    for (const f of ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]) expect(argv).toContain(f);
    expect(values(argv, "-kernel")).toEqual(["/env/vmlinux"]);
    expect(values(argv, "-serial")).toEqual(["chardev:console"]);
    expect(values(argv, "-chardev")).toContain("file,id=console,path=/ws/w1/logs/console.log");
  });

  test("guest RAM: one named backend for cold boots, template boots and clones", () => {
    const cold = buildQemuArgv(spec(), { ...base, accelerator: "tcg" });
    expect(values(cold, "-object")).toEqual(["memory-backend-ram,id=microvm.ram,size=512M"]);
    expect(cold).not.toContain("-incoming");
    const make = buildQemuArgv(spec({ memoryFile: { path: "/t/k,1/ram", shared: true } }), {
      ...base,
      accelerator: "tcg",
    });
    expect(values(make, "-object")).toEqual([
      "memory-backend-file,id=microvm.ram,size=512M,mem-path=/t/k,,1/ram,share=on",
    ]);
    expect(make).not.toContain("-incoming");
    const clone = buildQemuArgv(
      spec({ memoryFile: { path: "/t/k/ram", shared: false }, restoreFrom: "/t/k/state" }),
      { ...base, accelerator: "tcg" },
    );
    expect(values(clone, "-object")).toEqual([
      "memory-backend-file,id=microvm.ram,size=512M,mem-path=/t/k/ram,share=off",
    ]);
    expect(values(clone, "-incoming")).toEqual(["defer"]);
    // the same machine otherwise: a clone's devices must match the template's one for one
    const strip = (a: string[]) =>
      a.filter((x) => !x.startsWith("memory-backend") && x !== "-incoming" && x !== "defer");
    expect(strip(clone)).toEqual(strip(make));
    expect(strip(make)).toEqual(strip(cold));
  });

  test("TCG translation buffer per kind of boot (template make vs workspaces)", () => {
    const make = spec({ memoryFile: { path: "/t/ram", shared: true } });
    const clone = spec({ memoryFile: { path: "/t/ram", shared: false }, restoreFrom: "/t/state" });
    const resume = spec({ restoreFrom: "/ws/w1/paused/state" });
    expect(tcgTbSizeMib(make)).toBe(TEMPLATE_TB_MIB);
    for (const s of [spec(), clone, resume]) expect(tcgTbSizeMib(s)).toBe(WORKSPACE_TB_MIB);
    expect(values(buildQemuArgv(make, { ...base, accelerator: "tcg" }), "-accel")).toEqual([
      `tcg,tb-size=${TEMPLATE_TB_MIB}`,
    ]);
    expect(values(buildQemuArgv(clone, { ...base, accelerator: "tcg" }), "-accel")).toEqual([
      `tcg,tb-size=${WORKSPACE_TB_MIB}`,
    ]);
    // KVM has no translation buffer
    expect(values(buildQemuArgv(clone, { ...base, accelerator: "kvm" }), "-accel")).toEqual(["kvm"]);
  });

  test("accelerator picks the CPU model", () => {
    const tcg = buildQemuArgv(spec(), { ...base, accelerator: "tcg" });
    expect(values(tcg, "-accel")).toEqual(["tcg,tb-size=64"]);
    expect(values(tcg, "-cpu")).toEqual(["max"]);
    const kvm = buildQemuArgv(spec(), { ...base, accelerator: "kvm" });
    expect(values(kvm, "-accel")).toEqual(["kvm"]);
    expect(values(kvm, "-cpu")).toEqual(["host"]);
    const named = buildQemuArgv(spec(), { ...base, accelerator: "kvm", cpuModel: "Skylake-Client" });
    expect(values(named, "-cpu")).toEqual(["Skylake-Client"]);
  });

  test("rootfs read-only and unlocked as vda, data disk as vdb", () => {
    const argv = buildQemuArgv(spec(), { ...base, accelerator: "tcg" });
    const drives = values(argv, "-drive");
    expect(drives).toEqual([
      "id=root,file=/env/rootfs.ext4,format=raw,if=none,readonly=on,file.locking=off",
      "id=data,file=/ws/w1/disk.ext4,format=raw,if=none,discard=unmap",
    ]);
    const blk = values(argv, "-device").filter((d) => d.startsWith("virtio-blk-device"));
    expect(blk).toEqual(["virtio-blk-device,drive=root", "virtio-blk-device,drive=data"]);
  });

  test("no data disk: only the rootfs", () => {
    const argv = buildQemuArgv(spec({ dataDiskPath: undefined }), { ...base, accelerator: "tcg" });
    expect(values(argv, "-drive")).toHaveLength(1);
  });

  test("agent port and QMP on UNIX sockets", () => {
    const argv = buildQemuArgv(spec(), { ...base, accelerator: "tcg" });
    const chardevs = values(argv, "-chardev");
    expect(chardevs).toContain("socket,id=agent,path=/run/w1/agent.sock,server=on,wait=off");
    expect(chardevs).toContain("socket,id=qmp,path=/run/w1/qmp.sock,server=on,wait=off");
    const devices = values(argv, "-device");
    expect(devices).toContain("virtio-serial-device");
    expect(devices).toContain("virtserialport,chardev=agent,name=pyro.agent");
    expect(values(argv, "-mon")).toEqual(["chardev=qmp,mode=control"]);
  });

  test("network off: no network device at all", () => {
    const argv = buildQemuArgv(spec(), { ...base, accelerator: "tcg" });
    expect(argv).not.toContain("-netdev");
    expect(argv.some((a) => a.includes("virtio-net"))).toBe(false);
    expect(values(argv, "-append")[0]).not.toContain("ip=");
  });

  test("network on: user-mode net, kernel IP autoconfig and DNS", () => {
    const argv = buildQemuArgv(spec({ network: true }), { ...base, accelerator: "tcg" });
    expect(values(argv, "-netdev")).toEqual(["user,id=n0"]);
    expect(values(argv, "-device")).toContain("virtio-net-device,netdev=n0");
    const append = values(argv, "-append")[0]!;
    expect(append).toContain("ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off");
    expect(append).toContain("pyro.dns=10.0.2.3");
  });

  test("commas in paths are doubled inside option values", () => {
    const argv = buildQemuArgv(spec({ dataDiskPath: "/a,b/disk.ext4" }), {
      ...base,
      agentSocketPath: "/r,1/agent.sock",
      accelerator: "tcg",
    });
    expect(values(argv, "-drive")).toContain("id=data,file=/a,,b/disk.ext4,format=raw,if=none,discard=unmap");
    expect(values(argv, "-chardev")).toContain("socket,id=agent,path=/r,,1/agent.sock,server=on,wait=off");
    expect(qemuOptValue("x,y,,z")).toBe("x,,y,,,,z");
  });

  test("no environment is a programming error", () => {
    expect(() => buildQemuArgv(spec({ environment: null }), { ...base, accelerator: "tcg" })).toThrow();
  });
});

describe("qemuKernelArgs", () => {
  test("the fixed words", () => {
    expect(qemuKernelArgs(spec(), "kvm")).toEqual([
      "console=ttyS0",
      "panic=-1",
      "reboot=t",
      "root=/dev/vda",
      "ro",
      "init=/sbin/pyro-init",
      "random.trust_cpu=on",
      "quiet",
    ]);
  });

  test("tsc_early_khz only under TCG and only when known", () => {
    expect(qemuKernelArgs(spec(), "tcg", 2_700_000)).toContain("tsc_early_khz=2700000");
    expect(qemuKernelArgs(spec(), "kvm", 2_700_000).some((a) => a.startsWith("tsc_early_khz"))).toBe(false);
    expect(qemuKernelArgs(spec(), "tcg").some((a) => a.startsWith("tsc_early_khz"))).toBe(false);
  });

  test("extra words come last, so they can override", () => {
    const args = qemuKernelArgs(spec({ extraKernelArgs: ["loglevel=7", "foo=bar"] }), "tcg");
    expect(args.slice(-2)).toEqual(["loglevel=7", "foo=bar"]);
  });
});
