/**
 * The guest's attach step (sys.attach): the second half of every boot, done by the agent
 * in-process through bun:ffi (no mount/ip/perl exec: under TCG each costs 50-100 ms).
 *
 * Boot sequence (docs/architecture.md, "Guest"; docs/environments.md, "Disk layout in a guest"):
 * 1. The kernel mounts the environment's rootfs (/dev/vda) read-only and runs
 *    /sbin/pyro-init, which mounts /proc, /sys and /dev, then execs tini
 *    in front of `pyro-agent serve --guest`. Nothing has touched /dev/vdb, the workspace
 *    disk, yet: a machine saved at this point (a VM template) is no workspace's.
 * 2. The host's hello finds `attached: false` and sends sys.attach; `attach()` below then:
 *    flushes vdb's block-device buffers (BLKFLSBUF: the kernel read vdb's first blocks at
 *    probe time, maybe of a placeholder disk a template was saved with; the rest of the page
 *    cache, the root filesystem's, stays warm); mounts vdb ext4 (noatime, noinit_itable)
 *    at /mnt/data, or a tmpfs when the request says there is no data disk or vdb is absent
 *    or does not mount; makes upper/ and work/ there; mounts the overlay (lower: the
 *    read-only root) at /mnt/root; moves /proc, /sys (with the cgroup2 mount under it),
 *    /dev (and /tmp, if something mounted one) into it; mounts a tmpfs on /mnt/root/run holding /run/pyro/oldroot and
 *    /run/pyro/data (0700) and moves /mnt/data to /run/pyro/data (the agent's handle on the
 *    data disk: state, freeze); pivot_root(".", "run/pyro/oldroot") from /mnt/root, which
 *    moves the root and cwd of every process (tini, the agent) into the overlay; lazily
 *    unmounts the old root and chdirs to /. Then /dev/pts, /dev/shm, /tmp, /workspace, the host
 *    name (the request's, else /etc/hostname; a 127.0.1.1 line in /etc/hosts), resolv.conf
 *    (the request's dns, else the nameservers of the kernel's ip= autoconfig), lo up
 *    (SIOCSIFFLAGS). Last: the clock (unix_ms), the host's entropy (RNDADDENTROPY on
 *    /dev/urandom, then RNDRESEEDCRNG), and the host's boot id, bind-mounted over
 *    /proc/sys/kernel/random/boot_id (what systemd-nspawn does).
 *
 * Invariants: attach runs at most once per boot (server.ts refuses a second one and every
 * workspace request before it). A step that fails prints "pyro-init: ..." on the console
 * and the attach goes on where it can, as the old shell init did; only a failed overlay or
 * pivot_root is fatal (the guest would run on the read-only root): the request fails and
 * the guest stays detached. Paths the agent holds (/workspace, /run/pyro/data/...) are
 * resolved at use, after the pivot; nothing is opened on the old root before attach.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { PyroError } from "../src/protocol/errors.ts";
import { setClock } from "./system.ts";

const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;
const MS_RDONLY = 0x1;
const MS_REMOUNT = 0x20;
const MS_NOATIME = 0x400;
const MS_BIND = 0x1000;
const MS_MOVE = 0x2000;
const MNT_DETACH = 0x2;
const SYS_PIVOT_ROOT = 155; // x86_64
const SIOCSIFFLAGS = 0x8914;
const IFF_UP = 0x1;
const RNDADDENTROPY = 0x40085203; // _IOW('R', 0x03, int[2])
const RNDRESEEDCRNG = 0x5207; // _IO('R', 0x07)
const BLKFLSBUF = 0x1261; // _IO(0x12, 97)

let lib: ReturnType<typeof open> | null = null;
function open() {
  return dlopen("libc.so.6", {
    mount: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    umount2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    syscall: { args: [FFIType.i64, FFIType.ptr, FFIType.ptr], returns: FFIType.i64 },
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
  });
}
function libc() {
  lib ??= open();
  return lib.symbols;
}

/**
 * Open libc (bun:ffi compiles its call stubs) ahead of the attach: the agent does it at start,
 * so a VM template is saved with it done and its clones' attach does not pay it.
 */
export function prepareAttach(): void {
  libc();
}

const z = (s: string) => Buffer.from(`${s}\0`);

function errnoText(): string {
  const c = libc();
  const p = c.__errno_location();
  if (!p) return "unknown error";
  return String(c.strerror(read.i32(p, 0)));
}

/** mount(2); throws with strerror on failure. */
function mount(source: string, target: string, fstype: string | null, flags: number, data?: string): void {
  const r = libc().mount(
    z(source),
    z(target),
    fstype === null ? null : z(fstype),
    BigInt(flags),
    data ? z(data) : null,
  );
  if (r !== 0) throw new Error(`mount ${source} on ${target}: ${errnoText()}`);
}

function isMounted(dir: string): boolean {
  try {
    return readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .some((l) => l.split(" ")[1] === dir);
  } catch {
    return false;
  }
}

export interface AttachRequest {
  unix_ms: number;
  entropy: string;
  boot_id: string;
  hostname?: string;
  dns?: string;
  data_disk: boolean;
}

const say = (line: string) => console.error(`pyro-init: ${line}`);

/** Run `f`; on failure print "pyro-init: failed: ..." and go on. */
function attempt(what: string, f: () => void): boolean {
  try {
    f();
    return true;
  } catch (err) {
    say(`failed: ${what}: ${(err as Error).message}`);
    return false;
  }
}

/** Attach this guest to its workspace (see the header). Returns the time it took. */
export function attach(req: AttachRequest): { attached_ms: number; steps: string } {
  const t0 = performance.now();
  let last = t0;
  const marks: string[] = [];
  const mark = (what: string) => {
    const now = performance.now();
    marks.push(`${what} ${Math.round(now - last)}`);
    last = now;
  };
  // The kernel may hold blocks of whatever disk sat at vdb when the machine was saved (a
  // template's placeholder): flush vdb's buffers only. Not drop_caches: that also drops the
  // root filesystem's page cache the saved machine holds (the agent's own binary included),
  // and every page read back costs a virtio round trip (under TCG, seconds in all).
  if (req.data_disk) attempt("flush /dev/vdb's buffers", flushDataDiskBuffers);
  mark("flush-vdb");

  mountData(req.data_disk);
  mark("data");
  attempt("mkdir /mnt/data/{upper,work}", () => {
    mkdirSync("/mnt/data/upper", { recursive: true });
    mkdirSync("/mnt/data/work", { recursive: true });
  });
  try {
    mount(
      "pyro-root",
      "/mnt/root",
      "overlay",
      0,
      "lowerdir=/,upperdir=/mnt/data/upper,workdir=/mnt/data/work",
    );
  } catch (err) {
    say(`overlay mount failed; staying on the read-only root: ${(err as Error).message}`);
    throw new PyroError("IO_ERROR", `attach: overlay mount failed: ${(err as Error).message}`);
  }
  for (const m of ["/proc", "/sys", "/dev", "/tmp"]) {
    if (m === "/tmp" && !isMounted("/tmp")) continue;
    attempt(`move ${m}`, () => mount(m, `/mnt/root${m}`, null, MS_MOVE));
  }
  // /run first: it holds the old root while we pivot, and keeps a handle on the workspace
  // disk (/run/pyro/data, root-only) so the agent can sync, freeze or measure it.
  attempt("mount /run", () => mount("tmpfs", "/mnt/root/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
  attempt("mkdir /run/pyro", () => {
    mkdirSync("/mnt/root/run/pyro", { mode: 0o700, recursive: true });
    mkdirSync("/mnt/root/run/pyro/oldroot", { mode: 0o700, recursive: true });
    mkdirSync("/mnt/root/run/pyro/data", { mode: 0o700, recursive: true });
  });
  attempt("move /mnt/data", () => mount("/mnt/data", "/mnt/root/run/pyro/data", null, MS_MOVE));
  mark("overlay");
  // pivot_root moves the root and cwd of every process (tini, this agent) to the overlay.
  process.chdir("/mnt/root");
  if (Number(libc().syscall(SYS_PIVOT_ROOT, z("."), z("run/pyro/oldroot"))) !== 0) {
    const why = errnoText();
    say(`pivot_root failed; continuing on the read-only root: ${why}`);
    process.chdir("/");
    throw new PyroError("IO_ERROR", `attach: pivot_root failed: ${why}`);
  }
  // The overlay holds its own references to its layers, so the old root can go.
  if (libc().umount2(z("/run/pyro/oldroot"), MNT_DETACH) !== 0)
    say(`failed: umount /run/pyro/oldroot: ${errnoText()}`);
  process.chdir("/");

  attempt("mkdir /dev/pts /dev/shm", () => {
    mkdirSync("/dev/pts", { recursive: true });
    mkdirSync("/dev/shm", { recursive: true });
  });
  if (!isMounted("/dev/pts"))
    attempt("mount /dev/pts", () =>
      mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=0666"),
    );
  if (!isMounted("/dev/shm"))
    attempt("mount /dev/shm", () => mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
  if (!isMounted("/tmp"))
    attempt("mount /tmp", () => mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
  attempt("mkdir /workspace", () => mkdirSync("/workspace", { recursive: true }));

  mark("pivot");
  setHostname(req.hostname);
  setResolver(req.dns);
  attempt("bring lo up", loUp);

  mark("names");
  setClock(req.unix_ms);
  attempt("add host entropy", () => addEntropy(Buffer.from(req.entropy, "base64")));
  attempt("boot id", () => setBootId(req.boot_id));
  mark("clock-entropy-bootid");
  return { attached_ms: Math.round(performance.now() - t0), steps: marks.join(", ") };
}

/** BLKFLSBUF on /dev/vdb: write back and drop the block device's cached pages. */
function flushDataDiskBuffers(): void {
  let fd: number;
  try {
    fd = openSync("/dev/vdb", "r");
  } catch {
    return; // no vdb: mountData says so
  }
  try {
    if (libc().ioctl(fd, BigInt(BLKFLSBUF), null) !== 0) throw new Error(`BLKFLSBUF: ${errnoText()}`);
  } finally {
    closeSync(fd);
  }
}

function mountData(dataDisk: boolean): void {
  let onDisk = false;
  if (dataDisk) {
    let isBlock = false;
    try {
      isBlock = statSync("/dev/vdb").isBlockDevice();
    } catch {}
    if (!isBlock) say("no /dev/vdb; changes will live in memory only");
    else {
      // noinit_itable: the disk is a sparse file whose unused inode tables already read as
      // zeros; zeroing them in the guest would only allocate host disk space.
      try {
        mount("/dev/vdb", "/mnt/data", "ext4", MS_NOATIME, "noinit_itable");
        onDisk = true;
      } catch (err) {
        say(`cannot mount /dev/vdb; changes will live in memory only (${(err as Error).message})`);
      }
    }
  }
  if (!onDisk)
    attempt("mount /mnt/data tmpfs", () => mount("pyro-data", "/mnt/data", "tmpfs", 0, "mode=0755"));
}

function readLine(path: string): string {
  try {
    return (readFileSync(path, "utf8").split("\n")[0] ?? "").trim();
  } catch {
    return "";
  }
}

function setHostname(requested?: string): void {
  const oldName = readLine("/etc/hostname");
  const name = requested || oldName;
  if (!name) return;
  if (!attempt(`set hostname ${name}`, () => writeFileSync("/proc/sys/kernel/hostname", name))) return;
  if (oldName !== name) attempt("write /etc/hostname", () => writeFileSync("/etc/hostname", `${name}\n`));
  // Tools that resolve their own name (sudo, some build scripts) stall without this.
  attempt("write /etc/hosts", () => {
    let hosts = "";
    try {
      hosts = readFileSync("/etc/hosts", "utf8");
    } catch {}
    const known = hosts.split("\n").some((l) => l.trim().split(/\s+/).slice(1).includes(name));
    if (!known)
      writeFileSync(
        "/etc/hosts",
        `${hosts}${hosts && !hosts.endsWith("\n") ? "\n" : ""}127.0.1.1\t${name}\n`,
      );
  });
}

function setResolver(dns?: string): void {
  if (dns) {
    attempt("write /etc/resolv.conf", () => writeFileSync("/etc/resolv.conf", `nameserver ${dns}\n`));
    return;
  }
  // Servers learned by the kernel's ip= autoconfig (DHCP, or the static form's fields).
  if (!existsSync("/proc/net/pnp")) return;
  const servers = readFileSync("/proc/net/pnp", "utf8")
    .split("\n")
    .filter((l) => l.split(/\s+/)[0] === "nameserver")
    .map((l) => `nameserver ${l.split(/\s+/)[1] ?? ""}\n`)
    .join("");
  if (servers) attempt("write /etc/resolv.conf", () => writeFileSync("/etc/resolv.conf", servers));
}

/** lo: the kernel brings it up only when ip= autoconfig runs. */
function loUp(): void {
  const flags = Number.parseInt(readLine("/sys/class/net/lo/flags"), 16);
  if (Number.isNaN(flags)) throw new Error("no /sys/class/net/lo/flags");
  if (flags & IFF_UP) return;
  const c = libc();
  const fd = c.socket(2, 2, 0); // AF_INET, SOCK_DGRAM
  if (fd < 0) throw new Error(`socket: ${errnoText()}`);
  try {
    // struct ifreq { char name[16]; short flags; ... } padded to 40 bytes
    const ifr = Buffer.alloc(40);
    ifr.write("lo", 0, "latin1");
    ifr.writeInt16LE((flags | IFF_UP) & 0xffff, 16);
    if (c.ioctl(fd, BigInt(SIOCSIFFLAGS), ptr(ifr)) !== 0) throw new Error(`SIOCSIFFLAGS: ${errnoText()}`);
  } finally {
    c.close(fd);
  }
}

/** Mix `bytes` into the kernel's pool (credited) and reseed the CRNG from it. */
function addEntropy(bytes: Buffer): void {
  const c = libc();
  const fd = openSync("/dev/urandom", "w");
  try {
    // struct rand_pool_info { int entropy_count (bits); int buf_size (bytes); u32 buf[]; }
    const words = Math.ceil(bytes.length / 4);
    const info = Buffer.alloc(8 + words * 4);
    info.writeInt32LE(bytes.length * 8, 0);
    info.writeInt32LE(bytes.length, 4);
    bytes.copy(info, 8);
    if (c.ioctl(fd, BigInt(RNDADDENTROPY), ptr(info)) !== 0) throw new Error(`RNDADDENTROPY: ${errnoText()}`);
    if (c.ioctl(fd, BigInt(RNDRESEEDCRNG), null) !== 0) throw new Error(`RNDRESEEDCRNG: ${errnoText()}`);
  } finally {
    closeSync(fd);
  }
}

const BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id";
const BOOT_ID_FILE = "/run/pyro/boot_id";

/** Bind-mount a file holding `id` over the kernel's boot_id, read-only. */
function setBootId(id: string): void {
  writeFileSync(BOOT_ID_FILE, `${id}\n`, { mode: 0o444 });
  mount(BOOT_ID_FILE, BOOT_ID_PATH, null, MS_BIND);
  try {
    mount("none", BOOT_ID_PATH, null, MS_BIND | MS_REMOUNT | MS_RDONLY);
  } catch {} // read-only is a nicety; the id is already in place
}
