/**
 * The byte channel every hop of the protocol runs over (host↔guest, client↔supervisor,
 * tests), and the listener bookkeeping all its implementations share.
 *
 * Invariants of every ByteChannel built on ChannelListeners:
 * - bytes that arrive before anyone listens are held and handed to the first data listener
 *   (a peer may speak first);
 * - close listeners run exactly once, with the first error recorded (or none); one added
 *   after the close runs in a microtask, never synchronously inside onClose().
 */

/** A bidirectional byte stream (one per VM agent connection, per supervisor client, ...). */
export interface ByteChannel {
  write(bytes: Uint8Array): void;
  /** Called for every chunk received; chunk boundaries mean nothing. */
  onData(cb: (bytes: Uint8Array) => void): void;
  /** Called once when the stream ends for any reason. */
  onClose(cb: (reason?: Error) => void): void;
  close(): void;
  /** Bytes accepted by write() but not yet handed to the OS (for flow control); absent = unknown. */
  readonly bufferedBytes?: number;
  /** Stop/resume delivering onData (the peer then sees the OS's backpressure). */
  pauseReading?(): void;
  resumeReading?(): void;
}

/** onData/onClose bookkeeping for ByteChannel implementations (extend it, or hold one). */
export class ChannelListeners {
  private dataCbs: Array<(bytes: Uint8Array) => void> = [];
  private closeCbs: Array<(reason?: Error) => void> = [];
  private early: Uint8Array[] = [];
  private reason: Error | undefined;
  private ended = false;

  /** True once emitClose has run. */
  get closed(): boolean {
    return this.ended;
  }

  onData(cb: (bytes: Uint8Array) => void): void {
    this.dataCbs.push(cb);
    for (const bytes of this.early.splice(0)) cb(bytes);
  }

  onClose(cb: (reason?: Error) => void): void {
    if (this.ended) queueMicrotask(() => cb(this.reason));
    else this.closeCbs.push(cb);
  }

  emitData(bytes: Uint8Array): void {
    if (this.dataCbs.length === 0) this.early.push(bytes);
    else for (const cb of this.dataCbs) cb(bytes);
  }

  /** Remember an error to report when the channel closes (the first one wins). */
  fail(err: Error): void {
    this.reason ??= err;
  }

  /** Close once: run every close listener with the first recorded error. False if already closed. */
  emitClose(reason?: Error): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.reason ??= reason;
    for (const cb of this.closeCbs.splice(0)) cb(this.reason);
    return true;
  }
}
