/**
 * A small client for Firecracker's API socket (HTTP/1.1 over a UNIX socket), for the runtime
 * calls the config file cannot make: pause/resume, snapshots, Ctrl-Alt-Del. Bun's fetch
 * speaks HTTP over a UNIX socket with `{ unix: path }` (tested against Bun.serve({ unix })).
 * Request bodies are checked against the strict schemas first, so a typo fails here with
 * INVALID_INPUT instead of as a 400 from Firecracker.
 */
import * as v from "valibot";
import { PyroError } from "../../protocol/errors.ts";
import {
  FaultBody,
  InstanceActionInfo,
  type InstanceActionType,
  InstanceInfo,
  PartialDrive,
  SnapshotCreateParams,
  SnapshotLoadParams,
  VmState,
} from "./schema.ts";

export interface FirecrackerApiOptions {
  /** Per-request time limit; snapshot calls write the whole guest memory, so be generous. */
  timeoutMs?: number;
}

export class FirecrackerApi {
  private readonly timeoutMs: number;

  constructor(
    readonly socketPath: string,
    opts: FirecrackerApiOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  pause(): Promise<void> {
    return this.send("PATCH", "/vm", VmState, { state: "Paused" });
  }

  resume(): Promise<void> {
    return this.send("PATCH", "/vm", VmState, { state: "Resumed" });
  }

  /**
   * The VM must be paused first (swagger: PUT /snapshot/create). Writes the whole guest
   * memory: `timeoutMs` overrides the per-request limit.
   */
  createSnapshot(params: SnapshotCreateParams, opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.send("PUT", "/snapshot/create", SnapshotCreateParams, params, opts.timeoutMs);
  }

  /** Only on a fresh Firecracker process with nothing configured (swagger: PUT /snapshot/load). */
  loadSnapshot(params: SnapshotLoadParams, opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.send("PUT", "/snapshot/load", SnapshotLoadParams, params, opts.timeoutMs);
  }

  /**
   * swagger PATCH /drives/{drive_id} (post-boot only): e.g. point a restored template clone's
   * data drive at the clone's own disk before the guest is resumed.
   */
  patchDrive(params: PartialDrive): Promise<void> {
    return this.send("PATCH", `/drives/${encodeURIComponent(params.drive_id)}`, PartialDrive, params);
  }

  /** x86_64: the guest sees Ctrl-Alt-Del on its i8042 keyboard (needs SERIO_I8042 + KEYBOARD_ATKBD). */
  sendCtrlAltDel(opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.action("SendCtrlAltDel", opts.timeoutMs);
  }

  action(actionType: InstanceActionType, timeoutMs?: number): Promise<void> {
    return this.send("PUT", "/actions", InstanceActionInfo, { action_type: actionType }, timeoutMs);
  }

  async describeInstance(): Promise<InstanceInfo> {
    const body = await this.request("GET", "/");
    const parsed = v.safeParse(InstanceInfo, body);
    if (!parsed.success) {
      throw new PyroError("VMM_FAILED", "firecracker GET / returned an unexpected body", {
        details: { body },
      });
    }
    return parsed.output;
  }

  private async send<S extends v.GenericSchema>(
    method: string,
    path: string,
    schema: S,
    body: v.InferInput<S>,
    timeoutMs?: number,
  ): Promise<void> {
    const parsed = v.safeParse(schema, body);
    if (!parsed.success) {
      const issues = parsed.issues.map((i) => `${v.getDotPath(i) ?? "(root)"}: ${i.message}`);
      throw new PyroError("INVALID_INPUT", `invalid body for ${method} ${path}: ${issues.join("; ")}`, {
        details: { issues },
      });
    }
    await this.request(method, path, parsed.output, timeoutMs);
  }

  /** One request; any non-2xx becomes VMM_FAILED carrying Firecracker's fault_message. */
  private async request(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<unknown> {
    const where = `${method} ${path}`;
    let res: Response;
    try {
      res = await fetch(`http://localhost${path}`, {
        unix: this.socketPath,
        method,
        headers:
          body === undefined
            ? { accept: "application/json" }
            : { "content-type": "application/json", accept: "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs ?? this.timeoutMs),
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e?.name === "TimeoutError" ? "timed out" : (e?.code ?? e?.message ?? String(err));
      throw new PyroError("VMM_FAILED", `firecracker API ${where} on ${this.socketPath}: ${why}`, {
        details: { socketPath: this.socketPath, method, path, error: why },
        cause: err,
      });
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.ok) return json;
    const fault = v.safeParse(FaultBody, json);
    const faultMessage =
      (fault.success ? fault.output.fault_message : undefined) ?? (text.trim() || res.statusText);
    throw new PyroError("VMM_FAILED", `firecracker API ${where} failed (${res.status}): ${faultMessage}`, {
      details: { method, path, status: res.status, faultMessage },
    });
  }
}
