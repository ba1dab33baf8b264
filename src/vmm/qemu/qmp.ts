/**
 * A minimal QMP client: QEMU's JSON control protocol on a UNIX socket, one JSON object per
 * line. Enough for the supervisor: negotiate, query-status, system_powerdown, quit.
 */
import { PyroError } from "../../protocol/errors.ts";
import { connectUnixChannel, type UnixChannelOptions } from "../socket-channel.ts";
import type { ByteChannel } from "../types.ts";

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpStatus {
  status: string; // "running", "paused", "shutdown", "prelaunch", ...
  running: boolean;
}

/**
 * QEMU run states (query-status `status`) in which the VMM itself has halted the guest, so
 * its agent cannot answer and cannot say why, each with what it means for the user.
 * `io-error`: a drive's write failed on the host and the drive's `werror` policy (QEMU's
 * default: `enospc`) paused the VM; nothing is lost and `cont` retries once there is room.
 */
export const HALTED_RUN_STATES: Readonly<Record<string, string>> = {
  "io-error": "the VM is paused on a host I/O error (host disk full?)",
  "guest-panicked": "the guest kernel panicked and QEMU halted the VM",
  "internal-error": "QEMU stopped the VM on an internal error (emulation failure)",
  shutdown: "the guest has shut down but its VMM has not exited",
};

/** What a halted run state means (HALTED_RUN_STATES), or null for any other state. */
export function haltedReason(status: string): string | null {
  return Object.hasOwn(HALTED_RUN_STATES, status) ? (HALTED_RUN_STATES[status] as string) : null;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export class QmpClient {
  /** The greeting's `QMP.version.qemu` ({major, minor, micro}). */
  version: { major: number; minor: number; micro: number } | null = null;
  private nextId = 1;
  private pending = new Map<string, Pending>();
  private events: ((e: QmpEvent) => void)[] = [];
  private buffer = "";
  private decoder = new TextDecoder();
  private greeted: Promise<void>;
  private isClosed = false;
  readonly closed: Promise<void>;

  constructor(private channel: ByteChannel) {
    let greet!: () => void;
    let fail!: (e: Error) => void;
    this.greeted = new Promise<void>((res, rej) => {
      greet = res;
      fail = rej;
    });
    this.greeted.catch(() => {}); // observed by negotiate(); never an unhandled rejection
    let onClosed!: () => void;
    this.closed = new Promise<void>((r) => (onClosed = r));
    channel.onData((bytes) => {
      this.buffer += this.decoder.decode(bytes, { stream: true });
      let nl = this.buffer.indexOf("\n");
      while (nl >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line) this.dispatch(line, greet);
        nl = this.buffer.indexOf("\n");
      }
    });
    channel.onClose((reason) => {
      this.isClosed = true;
      const err = new PyroError("VMM_FAILED", "QMP connection closed", { cause: reason });
      fail(err);
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        // `quit` makes QEMU drop the connection, sometimes before it answers: that is success.
        if (p.command === "quit") p.resolve({});
        else p.reject(err);
      }
      onClosed();
    });
  }

  private dispatch(line: string, greet: () => void): void {
    let msg: any;
    try {
      msg = JSON.parse(line);
    } catch {
      return; // not JSON: ignore rather than wedge the stream
    }
    if (msg.QMP) {
      this.version = msg.QMP.version?.qemu ?? null;
      greet();
    } else if (typeof msg.event === "string") {
      for (const cb of this.events) cb(msg as QmpEvent);
    } else if (msg.id !== undefined) {
      const p = this.pending.get(String(msg.id));
      if (!p) return;
      this.pending.delete(String(msg.id));
      if ("error" in msg) {
        const { class: cls, desc } = msg.error ?? {};
        p.reject(
          new PyroError("VMM_FAILED", `QMP ${p.command} failed: ${desc ?? cls}`, {
            details: { command: p.command, class: cls, desc },
          }),
        );
      } else p.resolve(msg.return);
    }
  }

  /** Wait for the greeting and leave capabilities-negotiation mode. */
  async negotiate(): Promise<void> {
    await this.greeted;
    await this.execute("qmp_capabilities");
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.isClosed) {
      if (command === "quit") return Promise.resolve({} as T);
      return Promise.reject(new PyroError("VMM_FAILED", `QMP connection closed (${command})`));
    }
    const id = String(this.nextId++);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      const msg = args ? { execute: command, arguments: args, id } : { execute: command, id };
      this.channel.write(new TextEncoder().encode(`${JSON.stringify(msg)}\n`));
    });
  }

  onEvent(cb: (e: QmpEvent) => void): void {
    this.events.push(cb);
  }

  queryStatus(): Promise<QmpStatus> {
    return this.execute<QmpStatus>("query-status");
  }

  /** ACPI power button. With `-M microvm,acpi=off` the guest never sees it; kept for ACPI machines. */
  async systemPowerdown(): Promise<void> {
    await this.execute("system_powerdown");
  }

  /** QEMU exits at once (no guest shutdown); ask the agent to sync and power off first. */
  async quit(): Promise<void> {
    await this.execute("quit");
  }

  close(): void {
    this.channel.close();
  }
}

/** Connect (retrying until `deadlineMs`, absolute) and negotiate capabilities. */
export async function connectQmp(
  path: string,
  deadlineMs: number,
  opts?: UnixChannelOptions,
): Promise<QmpClient> {
  let channel: ByteChannel;
  try {
    channel = await connectUnixChannel(path, deadlineMs, opts);
  } catch (err) {
    // The QMP socket belongs to the VMM, not the guest: failing to reach it is a VMM failure.
    if (err instanceof PyroError && err.code === "GUEST_UNREACHABLE") {
      throw new PyroError("VMM_FAILED", `QMP socket unreachable: ${err.message}`, {
        details: err.details,
        cause: err,
      });
    }
    throw err;
  }
  const client = new QmpClient(channel);
  const left = Math.max(0, deadlineMs - Date.now());
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new PyroError("VMM_FAILED", `QMP on ${path} did not greet within the deadline`)),
      left + 1000,
    );
  });
  try {
    await Promise.race([client.negotiate(), timeout]);
    return client;
  } catch (err) {
    client.close();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
