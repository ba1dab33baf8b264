/**
 * The agent's request dispatcher: validates each stream's opening request against the
 * protocol schemas and runs it. Serves any number of connections (host-compat stdio,
 * virtio-serial, vsock) the same way. Every op of src/protocol/messages.ts's MESSAGE_TABLE
 * has a `case` here and nothing else does; results are not re-validated at run time (the
 * host checks every result where it arrives), guest/contract.test.ts runs every handler's
 * result through its schema instead.
 */
import { readFileSync, statfsSync } from "node:fs";
import os from "node:os";
import { parseRequest } from "../src/protocol/call.ts";
import type { ByteChannel } from "../src/protocol/channel.ts";
import { Connection, type ServerStream } from "../src/protocol/connection.ts";
import { PyroError } from "../src/protocol/errors.ts";
import { Channel } from "../src/protocol/frame.ts";
import { WRITE_MAX_BYTES } from "../src/protocol/limits.ts";
import { Request } from "../src/protocol/messages.ts";
import { PROTOCOL_VERSION, PYRO_VERSION } from "../src/protocol/version.ts";
import { killExecGroup, runExec } from "./exec.ts";
import { listPath, makeDirectory, movePath, readFile, removePath, statPath, writeFile } from "./fs.ts";
import { adoptSession, keepable, keepSessions, releaseSessions } from "./keep.ts";
import { connectPort } from "./net.ts";
import { setSecrets } from "./secrets.ts";
import { startService, stopService } from "./service.ts";
import { closeShell, openShell, resizeShell, signalShell, writeShell } from "./shell.ts";
import { powerOff, setClock } from "./system.ts";

export interface AgentOptions {
  /** Real directory shown to users as /workspace. */
  root: string;
  /** True inside a microVM (enables clock setting and poweroff). */
  guest: boolean;
  baseEnv: Record<string, string>;
  /** host compat: what to do on shutdown */
  onShutdown?: () => void;
  /**
   * Agent state kept outside the root (the diff baseline): in a guest the data disk's root
   * (/run/pyro/data/pyro-state), in host compat a directory beside the workspace. Without it
   * baseline.capture and diff are refused.
   */
  stateDir?: string;
  /**
   * Guest only: the boot id sys.attach gave, once it ran (until then the guest is detached
   * from its workspace disk and refuses workspace requests). Host compat: always attached.
   */
  attachedBootId?: string;
}

/** Requests a guest serves before sys.attach: none touches the workspace. */
const BEFORE_ATTACH = new Set([
  "hello",
  "ping",
  "clock.set",
  "info",
  "shutdown",
  "sys.attach",
  "exec.kill",
  "fs.thaw",
]);

function isAttached(opts: AgentOptions): boolean {
  return !opts.guest || opts.attachedBootId !== undefined;
}

function stateDirOf(opts: AgentOptions): string {
  if (!opts.stateDir) {
    throw new PyroError(
      "INVALID_INPUT",
      "this agent was started without a state directory (--state); it keeps no baseline",
    );
  }
  return opts.stateDir;
}

function bootId(opts: AgentOptions): string {
  if (opts.attachedBootId) return opts.attachedBootId;
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown";
  }
}

async function collect(input: AsyncIterable<Uint8Array>, max: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const p of input) {
    total += p.byteLength;
    if (total > max) throw new PyroError("FILE_TOO_LARGE", `write exceeds ${max} bytes`);
    parts.push(p);
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

/** A sys.attach is running (it is synchronous, but its module loads asynchronously). */
let attaching = false;

async function handle(opts: AgentOptions, stream: ServerStream): Promise<void> {
  const req = parseRequest(Request, stream.request);
  const root = opts.root;
  if (!isAttached(opts) && !BEFORE_ATTACH.has(req.op)) {
    throw new PyroError(
      "INVALID_STATE",
      `${req.op}: the guest is not attached to its workspace yet (the host sends sys.attach after the hello)`,
    );
  }
  switch (req.op) {
    case "hello": {
      if (req.protocol_version !== PROTOCOL_VERSION) {
        throw new PyroError(
          "AGENT_VERSION_MISMATCH",
          `host speaks protocol ${req.protocol_version}, agent ${PYRO_VERSION} speaks ${PROTOCOL_VERSION}`,
          { details: { agent_version: PYRO_VERSION, protocol_version: PROTOCOL_VERSION } },
        );
      }
      if (req.config?.env) Object.assign(opts.baseEnv, req.config.env);
      return stream.result({
        protocol_version: PROTOCOL_VERSION,
        agent_version: PYRO_VERSION,
        pid1: process.pid === 1,
        kernel: os.release(),
        boot_id: bootId(opts),
        root: "/workspace",
        attached: isAttached(opts),
      });
    }
    case "sys.attach": {
      // Host compat has no machine to attach: its agent is attached from the start.
      if (!opts.guest) return stream.result({ boot_id: bootId(opts), attached_ms: 0 });
      if (opts.attachedBootId !== undefined) {
        throw new PyroError(
          "INVALID_STATE",
          `the guest is already attached (boot id ${opts.attachedBootId})`,
        );
      }
      if (attaching) throw new PyroError("INVALID_STATE", "the guest is attaching already");
      attaching = true;
      try {
        const t0 = performance.now();
        const { attach } = await import("./attach.ts");
        const loaded = Math.round(performance.now() - t0);
        const { attached_ms, steps } = attach(req);
        opts.attachedBootId = req.boot_id;
        console.error(
          `pyro-agent: attached in ${attached_ms} ms (boot id ${req.boot_id}; ms: load ${loaded}, ${steps})`,
        );
        return stream.result({ boot_id: bootId(opts), attached_ms });
      } finally {
        attaching = false;
      }
    }
    case "ping":
      return stream.result({ pong: true });
    case "clock.set": {
      // Only a guest owns its clock; in host compat the host's clock is already right.
      const before = Date.now();
      if (opts.guest) setClock(req.unix_ms);
      return stream.result({ previous_offset_ms: before - req.unix_ms, set: opts.guest });
    }
    case "info": {
      let disk: { total_bytes: number; free_bytes: number } | null = null;
      try {
        const s = statfsSync(root);
        disk = { total_bytes: s.blocks * s.bsize, free_bytes: s.bavail * s.bsize };
      } catch {}
      return stream.result({
        agent_version: PYRO_VERSION,
        protocol_version: PROTOCOL_VERSION,
        kernel: os.release(),
        hostname: os.hostname(),
        uptime_s: Math.round(os.uptime()),
        boot_id: bootId(opts),
        memory: { total_bytes: os.totalmem(), available_bytes: os.freemem() },
        disk,
        agent_rss_bytes: process.memoryUsage().rss,
        guest: opts.guest,
      });
    }
    case "shutdown":
      stream.result({ shutting_down: true });
      setTimeout(() => (opts.guest ? powerOff() : opts.onShutdown?.()), 50);
      return;
    case "exec":
      return runExec({ root, baseEnv: opts.baseEnv }, req, keepable(stream, "exec", null));
    case "exec.kill":
      return stream.result({ killed: killExecGroup(req.pid) });
    case "fs.stat":
      return stream.result({ ...(await statPath(root, req.path)) });
    case "fs.list":
      return stream.result({
        ...(await listPath(root, req.path, {
          recursive: req.recursive ?? false,
          maxEntries: req.max_entries,
        })),
      });
    case "fs.read": {
      const r = await readFile(root, req.path, { maxBytes: req.max_bytes, offset: req.offset });
      const { content, ...meta } = r;
      stream.sendData(content, Channel.STDOUT);
      return stream.result({ ...meta, bytes: content.byteLength });
    }
    case "fs.write": {
      const data = await collect(stream.input, WRITE_MAX_BYTES);
      return stream.result({
        ...(await writeFile(root, req.path, data, {
          mode: req.mode,
          createParents: req.create_parents ?? true,
        })),
      });
    }
    case "fs.mkdir":
      return stream.result({ ...(await makeDirectory(root, req.path, { parents: req.parents ?? true })) });
    case "fs.remove":
      return stream.result({ ...(await removePath(root, req.path, { recursive: req.recursive ?? false })) });
    case "fs.move":
      return stream.result({
        ...(await movePath(root, req.from, req.to, { overwrite: req.overwrite ?? false })),
      });
    case "archive.import": {
      const { importArchive, importArchiveWithBaseline } = await import("./archive.ts");
      if (req.baseline) {
        const opt = { stripComponents: req.strip_components };
        const dir = stateDirOf(opts);
        return stream.result({
          ...(await importArchiveWithBaseline(root, dir, req.dest, stream.input, opt)),
        });
      }
      return stream.result({
        ...(await importArchive(root, req.dest, stream.input, { stripComponents: req.strip_components })),
      });
    }
    case "archive.export": {
      const { exportArchive } = await import("./archive.ts");
      const tar = await exportArchive(root, req.path);
      let bytes = 0;
      for await (const chunk of tar) {
        bytes += chunk.byteLength;
        stream.sendData(chunk, Channel.STDOUT);
        await stream.writable();
      }
      return stream.result({ bytes });
    }
    case "patch.apply": {
      const { applyPatch, collectPatch } = await import("./patch.ts");
      const patch = req.patch ?? (await collectPatch(stream.input));
      return stream.result({ ...(await applyPatch(root, patch)) });
    }
    case "fs.freeze": {
      if (!opts.guest)
        throw new PyroError("INVALID_INPUT", "fs.freeze: only a guest has a data disk to freeze");
      const { DATA_MOUNT, freeze } = await import("./freeze.ts");
      return stream.result(await freeze(DATA_MOUNT, req.timeout_ms));
    }
    case "fs.thaw": {
      const { thaw } = await import("./freeze.ts");
      return stream.result(thaw());
    }
    case "baseline.capture": {
      const { captureBaseline } = await import("./baseline.ts");
      return stream.result({ ...(await captureBaseline(root, stateDirOf(opts))) });
    }
    case "diff": {
      const { diffWorkspace } = await import("./diff.ts");
      const { patch, ...rest } = await diffWorkspace(root, stateDirOf(opts), { maxBytes: req.max_bytes });
      const bytes = new TextEncoder().encode(patch);
      if (bytes.byteLength > 0) stream.sendData(bytes, Channel.STDOUT);
      return stream.result({ ...rest, patch_bytes: bytes.byteLength });
    }
    case "shell.open":
      return openShell({ root, baseEnv: opts.baseEnv }, req, keepable(stream, "shell", req.shell_id));
    case "shell.write":
      return stream.result(writeShell(req.shell_id, req.input));
    case "shell.signal":
      return stream.result(signalShell(req.shell_id, req.signal));
    case "shell.resize":
      return stream.result(resizeShell(req.shell_id, req.cols, req.rows));
    case "shell.close":
      return stream.result(await closeShell(req.shell_id));
    case "net.connect":
      return connectPort(req, stream);
    case "secrets.set":
      return stream.result(setSecrets(req.secrets, opts.guest));
    case "service.start":
      return startService(
        { root, baseEnv: opts.baseEnv },
        req,
        keepable(stream, "service", req.service_name),
      );
    case "service.stop":
      return stream.result(await stopService(req.service_name, req.grace_ms));
    // pause/resume: sessions kept across the host connection's close (keep.ts)
    case "sys.keep":
      return stream.result(keepSessions(req));
    case "sys.release":
      return stream.result(releaseSessions());
    case "shell.adopt":
      return adoptSession("shell", req.shell_id, stream);
    case "service.adopt":
      return adoptSession("service", req.service_name, stream);
    case "exec.adopt":
      return adoptSession("exec", String(req.pid), stream);
  }
}

/** Serve one byte channel until it closes. */
export function serveChannel(opts: AgentOptions, channel: ByteChannel): Connection {
  return new Connection(channel, {
    onStream: (stream) => {
      handle(opts, stream).catch((err) => stream.fail(err));
    },
  });
}
