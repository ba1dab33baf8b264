/** Guest-only system duties: clock, poweroff. Linux syscalls through bun:ffi. */
import { dlopen, FFIType } from "bun:ffi";
import { readFileSync, writeFileSync } from "node:fs";

const RB_AUTOBOOT = 0x01234567;

function libc() {
  return dlopen("libc.so.6", {
    sync: { args: [], returns: FFIType.void },
    reboot: { args: [FFIType.i32], returns: FFIType.i32 },
    clock_settime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  });
}

/** Every mounted ext4 is read-only now (so its journal is marked clean). */
function ext4AllReadOnly(): boolean {
  try {
    return readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .filter((l) => l.split(" ")[2] === "ext4")
      .every((l) => (l.split(" ")[3] ?? "").split(",").includes("ro"));
  } catch {
    return true;
  }
}

/**
 * Flush, remount everything read-only, and reset: QEMU (-no-reboot) and Firecracker both
 * exit on the guest's reset. The read-only remount (sysrq "u") leaves the workspace disk's
 * journal clean, so offline disk tools can read a stopped workspace without recovery.
 */
export async function powerOff(): Promise<never> {
  const c = libc();
  c.symbols.sync();
  try {
    writeFileSync("/proc/sysrq-trigger", "u");
    const deadline = Date.now() + 3000;
    while (!ext4AllReadOnly() && Date.now() < deadline) await Bun.sleep(10);
  } catch {}
  c.symbols.sync();
  c.symbols.reboot(RB_AUTOBOOT);
  process.exit(0);
}

/** Set the guest clock to the host's, to the millisecond (clock_settime(CLOCK_REALTIME)). */
export function setClock(unixMs: number): void {
  const ts = new BigInt64Array([BigInt(Math.floor(unixMs / 1000)), BigInt((unixMs % 1000) * 1_000_000)]);
  libc().symbols.clock_settime(0, ts);
}
