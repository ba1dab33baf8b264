/**
 * The agent side of QEMU's virtio-serial port. Without udev there is no
 * /dev/virtio-ports/NAME link, so the port is found through sysfs. Reads return 0 while
 * no host is connected; a 0 read after traffic means the host went away, and the next
 * host connection gets a fresh protocol session.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { type ByteChannel, ChannelListeners } from "../src/protocol/channel.ts";
import { AGENT_PORT_NAME } from "../src/protocol/transport.ts";

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

/**
 * One host connection on the port. Writes are chained on the shared file handle; `pending`
 * counts bytes handed to write() but not yet written (flow control).
 */
class PortSession extends ChannelListeners implements ByteChannel {
  constructor(private readonly port: PortWriter) {
    super();
  }

  get bufferedBytes(): number {
    return this.port.pending;
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.port.write(bytes.slice(), () => this.emitClose());
  }

  close(): void {
    this.emitClose();
  }
}

interface FileWriter {
  write(buf: Uint8Array, off: number, len: number): Promise<{ bytesWritten: number }>;
}

/** The port's write side, shared by its sessions: one write chain, in order. */
class PortWriter {
  pending = 0;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly fh: FileWriter) {}

  write(copy: Uint8Array, onError: () => void): void {
    this.pending += copy.byteLength;
    this.chain = this.chain
      .then(async () => {
        let off = 0;
        while (off < copy.byteLength) {
          const { bytesWritten } = await this.fh.write(copy, off, copy.byteLength - off);
          off += bytesWritten;
        }
      })
      .catch(onError)
      .finally(() => {
        this.pending -= copy.byteLength;
      });
  }
}

/** Calls onSession with a channel for each host connection, forever. */
export async function serveVirtioPort(devPath: string, onSession: (ch: ByteChannel) => void): Promise<never> {
  const fh = await open(devPath, "r+");
  const buf = new Uint8Array(256 * 1024);
  const writer = new PortWriter(fh);
  for (;;) {
    const session = new PortSession(writer);
    let sawData = false;
    let announced = false;
    while (!session.closed) {
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, null);
      if (bytesRead === 0) {
        if (sawData) session.close();
        else await Bun.sleep(20);
        continue;
      }
      if (!announced) {
        announced = true;
        onSession(session);
      }
      sawData = true;
      session.emitData(buf.slice(0, bytesRead));
    }
  }
}
