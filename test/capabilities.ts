/**
 * What a test needs from the machine, declared once. Each capability is probed here, lazily
 * and at most once per test process, and yields null (present) or the reason it is missing.
 * A test or describe block states its needs through `needs(...)`:
 *
 *   const guest = needs("guest");
 *   guest.describe("real guest: workspace", () => { ... });
 *   needs("docker-registry", "skopeo").test("skopeo sees the manifest", async () => { ... });
 *
 * Invariants:
 * - Everything present: plain bun `describe`/`test`.
 * - Something missing that this kind of machine cannot have (CANNOT_HAVE: /dev/kvm, usable KVM,
 *   Firecracker, the vsock loopback transport of the host kernel): skipped, and the name
 *   ends in `[not runnable here: <cap>: <reason>]`; scripts/test.ts lists those by name.
 * - Something else missing: under CI (PYRO_REQUIRE_GUESTS=1, set by scripts/test.ts when
 *   CI=true) the block is replaced by ONE failing test naming the missing capability and why;
 *   elsewhere it is skipped with `[skipped: <cap>: <reason>]` in its name. scripts/test.ts
 *   also fails a CI run on any skip or todo that is not a declared cannot-have, so a test
 *   that skips by other means (a bare skipIf) cannot pass the guard either.
 */
import { describe as bunDescribe, test as bunTest } from "bun:test";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const REQUIRE_CAPABILITIES = process.env.PYRO_REQUIRE_GUESTS === "1";

const onPath =
  (bin: string, why = `${bin} is not on PATH`) =>
  () =>
    Bun.which(bin) || Bun.which(bin, { PATH: "/usr/sbin:/sbin" }) ? null : why;
const client = (bin: string) =>
  onPath(bin, `${bin} is not on PATH (scripts/setup.sh installs the chat clients when CI=true)`);

function testKernel(): string | null {
  // Same lookup as src/vmm/qemu/testing.ts (kept dependency-free here: this file is imported
  // by tests of every layer).
  const fromEnv = process.env.PYRO_TEST_KERNEL;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  const root = join(process.env.PYRO_BUILD_CACHE ?? join(import.meta.dir, "..", ".cache", "build"), "kernel");
  if (!existsSync(root)) return null;
  for (const rel of new Bun.Glob("*/vmlinux").scanSync({ cwd: root, onlyFiles: true }))
    return join(root, rel);
  return null;
}

/** KVM that boots a stock kernel: the product's own probe (a short boot, cached per host boot). */
function kvmProblem(): string | null {
  const kernel = testKernel();
  const qemu = Bun.which("qemu-system-x86_64");
  if (!kernel || !qemu) return "the KVM probe needs qemu-system-x86_64 and a built kernel";
  const probe = join(import.meta.dir, "..", "src", "vmm", "probe", "kvm.ts");
  const js = `const { probeKvm } = await import(${JSON.stringify(probe)});
    const r = await probeKvm({ kernelPath: ${JSON.stringify(kernel)}, qemuBin: ${JSON.stringify(qemu)},
      cacheFile: ${JSON.stringify(join(tmpdir(), "pyro-test-kvm-probe.json"))} });
    console.log(JSON.stringify(r));`;
  const p = Bun.spawnSync([process.execPath, "-e", js], { stdout: "pipe", stderr: "pipe" });
  try {
    const r = JSON.parse(p.stdout.toString()) as { usable: boolean; reason: string };
    return r.usable ? null : `KVM is not usable: ${r.reason}`;
  } catch {
    return `the KVM probe failed: ${p.stderr.toString().slice(0, 300)}`;
  }
}

function vsockLoopbackProblem(): string | null {
  if (existsSync("/sys/module/vsock_loopback")) return null;
  try {
    if (require("node:fs").readFileSync("/proc/kallsyms", "utf8").includes("vsock_loopback")) return null;
  } catch {}
  return "the host kernel has no vsock_loopback transport (modprobe vsock_loopback where it is a module)";
}

const PROBES = {
  /** QEMU plus everything building and booting the debian:12 environment needs. */
  guest: () =>
    onPath("qemu-system-x86_64")() ??
    (process.getuid?.() !== 0 ? "building an environment needs root" : null) ??
    onPath("debootstrap")() ??
    (existsSync("/usr/src/linux-source-6.1.tar.xz") ? null : "linux-source-6.1 is not installed"),
  qemu: onPath("qemu-system-x86_64"),
  /** A pyro kernel (PYRO_TEST_KERNEL, or the build cache scripts/setup.sh fills). */
  kernel: () => (testKernel() ? null : "no kernel: set PYRO_TEST_KERNEL or run scripts/setup.sh"),
  root: () => (process.getuid?.() === 0 ? null : "needs root (mknod, loop devices, debootstrap)"),
  /** The device node exists (whether KVM really runs a guest is "kvm"). */
  "kvm-device": () => (existsSync("/dev/kvm") ? null : "/dev/kvm does not exist"),
  kvm: kvmProblem,
  /** Firecracker plus the kernel and rootfs its end-to-end test boots. */
  firecracker: () => {
    if (!Bun.which(process.env.PYRO_FIRECRACKER_BIN || "firecracker"))
      return "no firecracker binary on PATH (or PYRO_FIRECRACKER_BIN)";
    if (!process.env.PYRO_TEST_KERNEL || !process.env.PYRO_TEST_ROOTFS)
      return "PYRO_TEST_KERNEL and PYRO_TEST_ROOTFS (a vmlinux and an environment rootfs.ext4) are not set";
    return null;
  },
  /** AF_VSOCK sockets can be made and bound. */
  vsock: () => {
    try {
      const { listenVsock } = require("../guest/vsock.ts");
      listenVsock(20_000 + Math.floor(Math.random() * 40_000), () => {})();
      return null;
    } catch (err) {
      return `cannot listen on AF_VSOCK here (${(err as Error).message})`;
    }
  },
  "vsock-loopback": vsockLoopbackProblem,
  /** Tap networks (egress allow-lists): root, iproute2, nftables and /dev/net/tun. */
  "tap-network": () =>
    (process.getuid?.() === 0 ? null : "tap networks need root") ??
    onPath("ip", "ip (iproute2) is not installed")() ??
    onPath("nft", "nft is not installed (apt install nftables)")() ??
    (existsSync("/dev/net/tun") ? null : "/dev/net/tun is missing"),
  "docker-registry": onPath(
    "docker-registry",
    "docker-registry is not installed (apt install docker-registry)",
  ),
  skopeo: onPath("skopeo", "skopeo is not installed (apt install skopeo)"),
  tar: () =>
    Bun.which("tar") && Bun.spawnSync(["tar", "--version"]).stdout.toString().includes("GNU tar")
      ? null
      : "GNU tar is not on PATH",
  git: onPath("git"),
  diff: onPath("diff"),
  "mkfs.ext4": onPath("mkfs.ext4", "mkfs.ext4 is not installed (e2fsprogs)"),
  busybox: onPath("busybox", "busybox (static) is not installed"),
  claude: client("claude"),
  codex: client("codex"),
  opencode: client("opencode"),
} satisfies Record<string, () => string | null>;

export type Capability = keyof typeof PROBES;

/**
 * What this machine class cannot provide, however it is set up: it is itself a guest without
 * usable nested KVM (so no Firecracker) and its kernel has no loadable modules. Missing these
 * skips with "not runnable here" even under CI; nothing else may.
 */
export const CANNOT_HAVE: ReadonlySet<Capability> = new Set<Capability>([
  // Machines of this kind differ: some have no /dev/kvm at all, some a paravirtual one on
  // which no kernel boots; guests run under TCG either way.
  "kvm-device",
  "kvm",
  "firecracker",
  "vsock-loopback",
]);

const cache = new Map<Capability, string | null>();
/** null when present, else why not (probed once per process). */
export function missingReason(cap: Capability): string | null {
  if (!cache.has(cap)) cache.set(cap, PROBES[cap]());
  return cache.get(cap) ?? null;
}

type TestFn = Parameters<typeof bunTest>[1];
export interface Gate {
  /** True when every declared capability is present. */
  ok: boolean;
  /** `cap: reason; ...` for what is missing, or null. */
  reason: string | null;
  describe(name: string, fn: () => void): void;
  test(name: string, fn: TestFn, timeoutMs?: number): void;
}

export function needs(...caps: Capability[]): Gate {
  const missing = caps.filter((c) => missingReason(c) !== null);
  if (missing.length === 0) return { ok: true, reason: null, describe: bunDescribe, test: bunTest };
  const reason = missing.map((c) => `${c}: ${missingReason(c)}`).join("; ");
  if (missing.every((c) => CANNOT_HAVE.has(c))) {
    const tag = ` [not runnable here: ${reason}]`;
    return {
      ok: false,
      reason,
      describe: (name, fn) => bunDescribe.skip(name + tag, fn),
      test: (name, fn, t) => bunTest.skip(name + tag, fn, t),
    };
  }
  if (REQUIRE_CAPABILITIES) {
    const fail = (name: string) =>
      bunTest(`${name} [missing capability]`, () => {
        throw new Error(`required under CI but missing: ${reason}`);
      });
    return { ok: false, reason, describe: fail, test: fail };
  }
  const tag = ` [skipped: ${reason}]`;
  return {
    ok: false,
    reason,
    describe: (name, fn) => bunDescribe.skip(name + tag, fn),
    test: (name, fn, t) => bunTest.skip(name + tag, fn, t),
  };
}
