/**
 * Restoring a Firecracker template snapshot as a new clone: a pure planner (which files, which
 * API calls in which order, what differs per clone) plus `runClonePlan`, which sends the
 * planned calls. Nothing here boots a VM; src/manager's template code (QEMU's today) decides
 * when to make a template and when to clone one (docs/firecracker.md "Templates").
 *
 * What a Firecracker 1.14 snapshot pins, and how a clone gets its own:
 * - drives: restored with the `path_on_host` they had. The shared read-only rootfs keeps its
 *   absolute path. The per-clone data drive is named by a path RELATIVE to Firecracker's
 *   working directory in the template's config, so each clone (cwd = its own run dir) opens
 *   its own file at load; `PATCH /drives/data` then names the clone's disk explicitly
 *   before the guest resumes (swagger PartialDrive, post-boot; the template never touched it).
 * - vsock: restored with its `uds_path`, and 1.14 has no `vsock_override` (1.17.0-dev has):
 *   the template's uds_path must be relative too, so each clone binds `<its run dir>/...`.
 * - net: restored with its `host_dev_name`; a clone has its own tap, passed as
 *   `network_overrides` (Firecracker >= 1.13). The guest's address is in its memory: the agent
 *   must re-address after the restore (like the RNG re-seed and clock set for QEMU clones).
 * - memory: `mem_backend File` maps the template's memory file privately (copy-on-write): all
 *   clones share its page-cache pages and never write it.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join, normalize } from "node:path";
import * as v from "valibot";
import { PyroError } from "../../protocol/errors.ts";
import type { FirecrackerApi } from "./api.ts";
import { FirecrackerConfig, PartialDrive, SnapshotLoadParams, type VmState } from "./schema.ts";

/** A template as saved: its two snapshot files and the config it was booted with. */
export interface FirecrackerTemplate {
  statePath: string;
  memPath: string;
  /** The `--config-file` document the template booted with (its paths are in the snapshot). */
  config: FirecrackerConfig;
  /** The Firecracker version that wrote the snapshot ("1.14.4"); a clone needs the same. */
  firecrackerVersion: string;
}

export interface CloneTarget {
  firecrackerBin: string;
  /** The clone's own directory (exists): Firecracker's cwd, API socket, vsock socket. */
  runDir: string;
  /** The clone's data disk (its /workspace). */
  dataDiskPath: string;
  /** The clone's tap, when the template has a network device. */
  tapName?: string;
  /** Version of the Firecracker that will load the snapshot. */
  firecrackerVersion: string;
}

export type CloneCall =
  | { method: "PUT"; path: "/snapshot/load"; body: v.InferOutput<typeof SnapshotLoadParams> }
  | { method: "PATCH"; path: string; body: v.InferOutput<typeof PartialDrive> }
  | { method: "PATCH"; path: "/vm"; body: v.InferOutput<typeof VmState> };

export interface ClonePlan {
  /** Spawn this (argv array) with `cwd`; no --config-file: a snapshot load needs a bare process. */
  argv: string[];
  cwd: string;
  apiSocketPath: string;
  /** Host path of the clone's vsock socket (connect here after the resume). */
  vsockPath: string;
  /** Stale sockets to remove before the spawn (Firecracker will not bind over them). */
  removeBeforeStart: string[];
  /** Symlinks to make before the spawn: `path` → `target` (the relative drive path in the clone's dir). */
  links: { path: string; target: string }[];
  /** The API calls, in order. */
  calls: CloneCall[];
}

const DATA_DRIVE = "data";

function bad(message: string, details?: Record<string, unknown>): PyroError {
  return new PyroError("INVALID_INPUT", `cannot clone the firecracker template: ${message}`, { details });
}

/** A relative path that stays inside the clone's directory. */
function insideRelative(p: string): boolean {
  const n = normalize(p);
  return !isAbsolute(n) && n !== ".." && !n.startsWith("../");
}

function versionAtLeast(version: string, major: number, minor: number): boolean {
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

function checked<S extends v.GenericSchema>(schema: S, body: unknown, what: string): v.InferOutput<S> {
  const r = v.safeParse(schema, body);
  if (!r.success) {
    throw bad(`${what}: ${r.issues.map((i) => `${v.getDotPath(i) ?? "(root)"}: ${i.message}`).join("; ")}`);
  }
  return r.output;
}

export function planTemplateClone(t: FirecrackerTemplate, c: CloneTarget): ClonePlan {
  // Firecracker loads a snapshot whose state format version it supports; pyro is stricter and
  // clones only with the release that wrote the template (a new release means a new template).
  if (t.firecrackerVersion !== c.firecrackerVersion) {
    throw bad(
      `made by firecracker ${t.firecrackerVersion}, this is ${c.firecrackerVersion}: rebuild the template`,
    );
  }
  const uds = t.config.vsock?.uds_path;
  if (!uds) throw bad("the template has no vsock device (the agent channel)");
  if (!insideRelative(uds)) {
    throw bad("the template's vsock uds_path must be relative (1.14 cannot move it on restore)", { uds });
  }
  const data = t.config.drives.find((d) => d.drive_id === DATA_DRIVE);
  if (!data?.path_on_host) throw bad(`the template has no "${DATA_DRIVE}" drive`);
  if (!insideRelative(data.path_on_host)) {
    throw bad("the template's data drive path must be relative (each clone opens its own)", {
      path: data.path_on_host,
    });
  }
  const nics = t.config["network-interfaces"] ?? [];
  if (nics.length > 1) throw bad("templates with more than one network interface are not supported");
  const nic = nics[0];
  if (nic && !c.tapName) throw bad("the template has a network device: the clone needs its own tap");
  if (!nic && c.tapName) throw bad("the template has no network device: a clone cannot add one");
  if (nic && !versionAtLeast(c.firecrackerVersion, 1, 13)) {
    throw bad("a networked clone needs network_overrides (firecracker >= 1.13)");
  }

  const apiSocketPath = join(c.runDir, "fc.sock");
  const vsockPath = join(c.runDir, uds);
  const load = checked(
    SnapshotLoadParams,
    {
      snapshot_path: t.statePath,
      mem_backend: { backend_type: "File", backend_path: t.memPath },
      // Paused after the load: the data drive is re-pointed before the guest runs again.
      resume_vm: false,
      ...(nic && c.tapName
        ? { network_overrides: [{ iface_id: nic.iface_id, host_dev_name: c.tapName }] }
        : {}),
    },
    "snapshot load body",
  );
  const drive = checked(PartialDrive, { drive_id: DATA_DRIVE, path_on_host: c.dataDiskPath }, "drive patch");
  return {
    argv: [c.firecrackerBin, "--api-sock", apiSocketPath],
    cwd: c.runDir,
    apiSocketPath,
    vsockPath,
    removeBeforeStart: [apiSocketPath, vsockPath],
    links: [{ path: join(c.runDir, data.path_on_host), target: c.dataDiskPath }],
    calls: [
      { method: "PUT", path: "/snapshot/load", body: load },
      { method: "PATCH", path: `/drives/${DATA_DRIVE}`, body: drive },
      { method: "PATCH", path: "/vm", body: { state: "Resumed" } },
    ],
  };
}

/** Send a clone plan's calls in order through the API client (each body re-checked there). */
export async function runClonePlan(
  api: FirecrackerApi,
  plan: ClonePlan,
  opts: { loadTimeoutMs?: number } = {},
): Promise<void> {
  for (const call of plan.calls) {
    if (call.path === "/snapshot/load") {
      await api.loadSnapshot(call.body as v.InferOutput<typeof SnapshotLoadParams>, {
        timeoutMs: opts.loadTimeoutMs,
      });
    } else if (call.path === "/vm") {
      const state = (call.body as v.InferOutput<typeof VmState>).state;
      await (state === "Resumed" ? api.resume() : api.pause());
    } else {
      await api.patchDrive(call.body as v.InferOutput<typeof PartialDrive>);
    }
  }
}

/** A template boot names its per-clone files relative to Firecracker's cwd (the run dir). */
export const TEMPLATE_VSOCK_PATH = "vsock.sock";
export const TEMPLATE_DATA_DRIVE_PATH = "data.ext4";
/** Beside a template's snapshot state: the config it booted with and the Firecracker that saved it. */
export const TEMPLATE_DESCRIPTOR = "firecracker.json";

const Descriptor = v.strictObject({ firecracker_version: v.string(), config: FirecrackerConfig });
export type TemplateDescriptor = v.InferOutput<typeof Descriptor>;

/** The descriptor of the template whose state file is `statePath` (its directory's), checked. */
export function readTemplateDescriptor(statePath: string): TemplateDescriptor {
  const file = join(dirname(statePath), TEMPLATE_DESCRIPTOR);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw bad(`cannot read ${file}: ${(err as Error).message}`);
  }
  return checked(Descriptor, raw, TEMPLATE_DESCRIPTOR);
}

export function templateDescriptorJson(d: TemplateDescriptor): string {
  return `${JSON.stringify(checked(Descriptor, d, TEMPLATE_DESCRIPTOR), null, 2)}\n`;
}
