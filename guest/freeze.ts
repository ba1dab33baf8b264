/**
 * Freeze and thaw the filesystem on the workspace's data disk, so the host can copy the disk
 * image while the guest runs (named snapshots, the baseline image; src/manager/disk-image.ts).
 *
 * FIFREEZE on the ext4 mounted at /run/pyro/data (pyro-init's handle on the data disk; the
 * overlay that is / cannot be frozen itself) makes the kernel block new writes, flush every
 * dirty page, commit and checkpoint the journal and clear the superblock's needs_recovery
 * flag, then issue a cache flush to the device (QEMU and Firecracker fsync the image file).
 * Until FITHAW the image on the host is a clean filesystem that e2fsck and debugfs accept
 * as is, and it does not change.
 *
 * Invariants: at most one freeze is held; every freeze has a timer that thaws it if the host
 * never does (a host that died mid-copy must not leave the guest's writers blocked forever);
 * `thaw()` says whether it ended a freeze, so a host whose copy outlived the timer knows the
 * copy is not consistent. The agent itself writes nothing to the data disk while frozen
 * (freeze/thaw/ping touch no file); other requests that write simply block until the thaw.
 */
import { dlopen, FFIType, read } from "bun:ffi";
import { closeSync, openSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { PyroError } from "../src/protocol/errors.ts";

/** Where pyro-init keeps the data disk mounted (see rootfs/init/pyro-init). */
export const DATA_MOUNT = "/run/pyro/data";

// _IOWR('X', 119, int) and _IOWR('X', 120, int) from linux/fs.h
const FIFREEZE = 0xc0045877;
const FITHAW = 0xc0045878;

function openLibc() {
  return dlopen("libc.so.6", {
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}
let libc: ReturnType<typeof openLibc> | null = null;
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

function ioctlOnMount(mount: string, request: number): string | null {
  libc ??= openLibc();
  const fd = openSync(mount, "r");
  try {
    if (libc.ioctl(fd, request, 0) === 0) return null;
    const loc = libc.__errno_location();
    const errno = loc ? read.i32(loc, 0) : 0;
    return ERRNO_NAMES.get(errno) ?? `E${errno}`;
  } finally {
    closeSync(fd);
  }
}

let held: { mount: string; timer: ReturnType<typeof setTimeout> } | null = null;
let freezing = false;

/**
 * Write the page cache out first, in a child process (`sync -f`, syncfs(2)): FIFREEZE blocks
 * the agent's one JS thread until everything dirty is on the disk, and under TCG a large
 * dirty cache (a fresh seed) takes long enough that the host's liveness probe, unanswered,
 * would declare the agent dead. An image without `sync` goes straight to the freeze.
 */
async function flush(mount: string): Promise<void> {
  try {
    await Bun.spawn(["sync", "-f", mount], { stdin: "ignore", stdout: "ignore", stderr: "ignore" }).exited;
  } catch {}
}

export async function freeze(mount: string, timeoutMs: number): Promise<{ frozen: true; mount: string }> {
  if (held || freezing)
    throw new PyroError("WORKSPACE_BUSY", "the workspace disk is already frozen for another copy");
  freezing = true;
  let err: string | null;
  try {
    await flush(mount);
    err = ioctlOnMount(mount, FIFREEZE);
  } finally {
    freezing = false;
  }
  if (err) {
    throw new PyroError("IO_ERROR", `cannot freeze the filesystem at ${mount}: ${err}`, {
      details: { mount, errno: err },
    });
  }
  const timer = setTimeout(() => {
    if (held?.timer === timer) thaw();
  }, timeoutMs);
  held = { mount, timer };
  return { frozen: true, mount };
}

export function thaw(): { thawed: boolean } {
  if (!held) return { thawed: false };
  const { mount, timer } = held;
  clearTimeout(timer);
  held = null;
  const err = ioctlOnMount(mount, FITHAW);
  // EINVAL: not frozen (someone else thawed it); the freeze we held is over either way.
  if (err && err !== "EINVAL") {
    throw new PyroError("IO_ERROR", `cannot thaw the filesystem at ${mount}: ${err}`, {
      details: { mount, errno: err },
    });
  }
  return { thawed: err === null };
}
