/**
 * The agent side of QEMU's virtio-serial port. Without udev there is no
 * /dev/virtio-ports/NAME link, so the port is found through sysfs. Reads return 0 while
 * no host is connected; a 0 read after traffic means the host went away, and the next
 * host connection gets a fresh protocol session.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import type { ByteChannel } from "../src/vmm/types.ts";

export const AGENT_PORT_NAME = "pyro.agent";

export function findVirtioPort(name = AGENT_PORT_NAME): string | null {
  const dir = "/sys/class/virtio-ports";
  if (!existsSync(dir)) return null;
  for (const entry of readdirSync(dir)) {
    try {
      if (readFileSync(`${dir}/${entry}/name`, "utf8").trim() === name) return `/dev/${entry}`;
    } catch {}
  }
  return null;
}

/** Calls onSession with a channel for each host connection, forever. */
export async function serveVirtioPort(devPath: string, onSession: (ch: ByteChannel) => void): Promise<never> {
  const fh = await open(devPath, "r+");
  const buf = new Uint8Array(256 * 1024);
  let writeChain: Promise<unknown> = Promise.resolve();
  let pending = 0; // bytes handed to write() but not yet written (flow control)
  for (;;) {
    const dataCbs: Array<(b: Uint8Array) => void> = [];
    const closeCbs: Array<(e?: Error) => void> = [];
    let open_ = true;
    const endSession = () => {
      if (!open_) return;
      open_ = false;
      for (const cb of closeCbs.splice(0)) cb();
    };
    const channel: ByteChannel = {
      write(bytes) {
        if (!open_) return;
        const copy = bytes.slice();
        pending += copy.byteLength;
        writeChain = writeChain
          .then(async () => {
            let off = 0;
            while (off < copy.byteLength) {
              const { bytesWritten } = await fh.write(copy, off, copy.byteLength - off);
              off += bytesWritten;
            }
          })
          .catch(() => endSession())
          .finally(() => {
            pending -= copy.byteLength;
          });
      },
      onData: (cb) => dataCbs.push(cb),
      onClose: (cb) => (open_ ? closeCbs.push(cb) : cb()),
      close: endSession,
      get bufferedBytes() {
        return pending;
      },
    };
    let sawData = false;
    let announced = false;
    while (open_) {
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, null);
      if (bytesRead === 0) {
        if (sawData) endSession();
        else await Bun.sleep(20);
        continue;
      }
      if (!announced) {
        announced = true;
        onSession(channel);
      }
      sawData = true;
      const chunk = buf.slice(0, bytesRead);
      for (const cb of dataCbs) cb(chunk);
    }
  }
}
