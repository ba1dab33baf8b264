/**
 * VM templates on Firecracker (docs/firecracker.md "Templates"; QEMU's are templates.ts, whose
 * store rules this follows: per-key lock, temp dir renamed into place when whole and fsynced,
 * hashes checked before use, a failed make recorded and not retried for an hour).
 *
 * `<home>/templates/<key>/` holds
 * - `state`: Firecracker's microVM state (`PUT /snapshot/create`, Full, VM paused);
 * - `mem`: the guest memory written by that snapshot. Every clone loads it with
 *   `mem_backend: { backend_type: "File" }`, which Firecracker maps MAP_PRIVATE: clones share
 *   its page-cache pages copy-on-write and never write it;
 * - `firecracker.json`: the config the template booted with (its data drive and vsock socket
 *   named relative to Firecracker's cwd, so each clone opens its own) and the Firecracker
 *   version that saved it (src/vmm/firecracker/template.ts);
 * - `meta.json`: the key's parts and the three files' size and sha256.
 *
 * The key covers the backend and the Firecracker version (a snapshot is only loaded by the
 * release that wrote it), the environment's kernel/rootfs/agent, the protocol, vCPUs, memory
 * and the data disk's size. Only networkless machines (every Firecracker network is a tap
 * with a per-workspace address in guest memory) and never under the jailer.
 *
 * A clone: the backend (src/vmm/firecracker/index.ts) gets `memoryFile: { path: mem, shared:
 * false }` and `restoreFrom: state`, loads the snapshot paused, `PATCH /drives/data` to the
 * clone's own disk, resumes; then sys.attach gives the guest its clock, entropy and a fresh
 * boot id (src/manager/machine.ts), as for QEMU clones.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import type { Env } from "../base/paths.ts";
import type { ProgressSink } from "../base/progress.ts";
import type { InstalledEnvironment } from "../env/store.ts";
import { PyroError } from "../protocol/errors.ts";
import { findFirecracker, firecrackerVersion } from "../vmm/firecracker/binary.ts";
import { parseConfig } from "../vmm/firecracker/config.ts";
import type { FirecrackerVmHandle } from "../vmm/firecracker/index.ts";
import { jailerSettings } from "../vmm/firecracker/jailer.ts";
import { TEMPLATE_DESCRIPTOR, templateDescriptorJson } from "../vmm/firecracker/template.ts";
import {
  cachedVersion,
  type EnsureResult,
  ensureOf,
  FileMeta,
  findOf,
  guestKeyParts,
  makeTemplateDir,
  TEMPLATE_DATA_DISK_MIB,
  type TemplateKind,
  type TemplateShape,
  type TemplateStatus,
  templatable,
  templateKey,
} from "./templates.ts";

/** Bump when what a Firecracker template holds or how it is made changes. */
export const FIRECRACKER_TEMPLATE_FORMAT = 1;
const KeyParts = v.strictObject({
  format: v.number(),
  backend: v.literal("firecracker"),
  environment: v.string(),
  env_version: v.string(),
  kernel_sha256: v.string(),
  rootfs_sha256: v.string(),
  agent_sha256: v.nullable(v.string()),
  protocol_version: v.number(),
  firecracker_version: v.string(),
  vcpu_count: v.number(),
  mem_mib: v.number(),
  data_disk_mib: v.number(),
  network: v.literal("off"),
});
export type FirecrackerKeyParts = v.InferOutput<typeof KeyParts>;

const Meta = v.strictObject({
  key: v.string(),
  parts: KeyParts,
  state: FileMeta,
  mem: FileMeta,
  descriptor: FileMeta,
  made_at: v.string(),
  make_ms: v.number(),
});
type Meta = v.InferOutput<typeof Meta>;

/** The template's files, as named in its directory. */
const STATE = "state";
const MEM = "mem";

export function firecrackerKeyParts(
  installed: InstalledEnvironment,
  shape: TemplateShape,
  firecracker: string,
): FirecrackerKeyParts {
  return {
    format: FIRECRACKER_TEMPLATE_FORMAT,
    backend: "firecracker",
    ...guestKeyParts(installed),
    firecracker_version: firecracker,
    vcpu_count: shape.vcpu_count,
    mem_mib: shape.mem_mib,
    data_disk_mib: TEMPLATE_DATA_DISK_MIB,
    network: "off",
  };
}

/** templates.ts templateKey (the parts differ from QEMU's, so the keys do). */
export const firecrackerTemplateKey = (parts: FirecrackerKeyParts): string => templateKey(parts);

/** The key parts for a Firecracker shape on this host, or why there is no template for it. */
export async function firecrackerPartsFor(
  home: string,
  env: Env,
  shape: TemplateShape,
): Promise<{ parts: FirecrackerKeyParts; installed: InstalledEnvironment } | { reason: string }> {
  if (shape.network !== "off") return { reason: "firecracker networking (a tap) boots cold" };
  if (jailerSettings(env, { uid: 0, gid: 0 }))
    return { reason: "no VM templates under the jailer (PYRO_FIRECRACKER_JAILER)" };
  const installed = templatable(home, shape);
  if ("reason" in installed) return installed;
  const version = await cachedVersion(home, "firecracker", findFirecracker(env), firecrackerVersion);
  if (!version) return { reason: "Firecracker's version is unknown" };
  return { parts: firecrackerKeyParts(installed, shape, version), installed };
}

/**
 * The template for these parts, verified: `state` and `firecracker.json` hashed on every use,
 * `mem` once per (size, mtime, ctime, dev, inode). Never makes one.
 */
export const findFirecrackerTemplate = (home: string, parts: FirecrackerKeyParts): Promise<TemplateStatus> =>
  findOf(firecrackerKind, home, parts);

/** templates.ts ensureTemplate for a Firecracker shape. Never throws: a failure is the status. */
export const ensureFirecrackerTemplate = (
  ctx: { home: string; env: Env; progress: ProgressSink },
  shape: TemplateShape,
  opts: { retryFailed?: boolean } = {},
): Promise<EnsureResult> => ensureOf(firecrackerKind, ctx, shape, opts);

/**
 * The Firecracker template (templates.ts makeTemplateDir): memory in `mem`, the snapshot in
 * `state`, and the config it booted with as a descriptor clones check (the release that saves
 * it is the one clones must run: checked again at each clone).
 */
function makeFirecrackerTemplate(
  home: string,
  env: Env,
  installed: InstalledEnvironment,
  parts: FirecrackerKeyParts,
  key: string,
): Promise<void> {
  return makeTemplateDir(home, env, installed, parts, key, {
    backend: { name: "firecracker", accelerator: "kvm" },
    memName: MEM,
    network: false,
    beforeSave: async (vm) => {
      const handle = vm as FirecrackerVmHandle;
      const { vmm_version } = await handle.api.describeInstance();
      if (vmm_version !== parts.firecracker_version)
        throw new PyroError(
          "VMM_FAILED",
          `firecracker says ${vmm_version} over its API but ${parts.firecracker_version} to --version`,
        );
      const descriptor = templateDescriptorJson({
        firecracker_version: vmm_version,
        config: parseConfig(JSON.parse(readFileSync(handle.configPath, "utf8"))),
      });
      return { [TEMPLATE_DESCRIPTOR]: descriptor };
    },
    files: { state: STATE, mem: MEM, descriptor: TEMPLATE_DESCRIPTOR },
  });
}

const firecrackerKind: TemplateKind<FirecrackerKeyParts, Meta> = {
  label: "a Firecracker VM template",
  meta: Meta,
  sameShape: (a, b) =>
    a.environment === b.environment && a.vcpu_count === b.vcpu_count && a.mem_mib === b.mem_mib,
  files: (m) => ({
    hashed: [
      [STATE, m.state],
      [TEMPLATE_DESCRIPTOR, m.descriptor],
    ],
    mem: [MEM, m.mem],
  }),
  partsFor: firecrackerPartsFor,
  make: makeFirecrackerTemplate,
};

/** templates.ts readyTemplate for a Firecracker shape: the verified files, or why none. */
export async function readyFirecrackerTemplate(
  home: string,
  env: Env,
  shape: TemplateShape,
): Promise<{ ok: true; key: string; ram: string; state: string } | { ok: false; reason: string | null }> {
  const p = await firecrackerPartsFor(home, env, shape);
  if ("reason" in p) return { ok: false, reason: p.reason };
  const t = await findFirecrackerTemplate(home, p.parts);
  if (t.status !== "ready") return { ok: false, reason: `template ${t.status}: ${t.reason}` };
  return { ok: true, key: t.key, ram: join(t.dir, MEM), state: join(t.dir, STATE) };
}
