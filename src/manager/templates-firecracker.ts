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
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { writeFileAtomic } from "../base/atomic.ts";
import { withLock } from "../base/lock.ts";
import type { Env } from "../base/paths.ts";
import type { ProgressSink } from "../base/progress.ts";
import { findInstalled, type InstalledEnvironment, sha256File } from "../env/store.ts";
import { PyroError } from "../protocol/errors.ts";
import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { findFirecracker, firecrackerVersion } from "../vmm/firecracker/binary.ts";
import { parseConfig } from "../vmm/firecracker/config.ts";
import type { FirecrackerVmHandle } from "../vmm/firecracker/index.ts";
import { jailerSettings } from "../vmm/firecracker/jailer.ts";
import { TEMPLATE_DESCRIPTOR, templateDescriptorJson } from "../vmm/firecracker/template.ts";
import { bootTimeoutMs } from "./boot.ts";
import {
  DETACHED_BOOT_PROTOCOL,
  dropTemplate,
  type EnsureResult,
  failedPath,
  makeTemplateDir,
  RETRY_AFTER_MS,
  recordedFailure,
  stampOf,
  sweep,
  TEMPLATE_DATA_DISK_MIB,
  type TemplateShape,
  type TemplateStatus,
  templatesDir,
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

const FileMeta = v.strictObject({ bytes: v.number(), sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)) });
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
  const m = installed.manifest;
  return {
    format: FIRECRACKER_TEMPLATE_FORMAT,
    backend: "firecracker",
    environment: m.name,
    env_version: m.version,
    kernel_sha256: m.kernel.sha256,
    rootfs_sha256: m.rootfs.sha256,
    agent_sha256: m.agent_sha256 ?? null,
    protocol_version: PROTOCOL_VERSION,
    firecracker_version: firecracker,
    vcpu_count: shape.vcpu_count,
    mem_mib: shape.mem_mib,
    data_disk_mib: TEMPLATE_DATA_DISK_MIB,
    network: "off",
  };
}

/** sha256 over the parts in a fixed order (never equal to a QEMU key: the parts differ). */
export function firecrackerTemplateKey(parts: FirecrackerKeyParts): string {
  const ordered = Object.keys(parts)
    .sort()
    .map((k) => [k, parts[k as keyof FirecrackerKeyParts]]);
  return new Bun.CryptoHasher("sha256").update(JSON.stringify(ordered)).digest("hex");
}

/** `firecracker --version`, cached in `<home>/cache/firecracker-version.json` by the binary's stamp. */
async function cachedFirecrackerVersion(home: string, env: Env): Promise<string | null> {
  const bin = findFirecracker(env);
  if (!bin) return null;
  const cache = join(home, "cache", "firecracker-version.json");
  let stamp: string;
  try {
    stamp = `${bin}|${stampOf(realpathSync(bin))}`;
  } catch {
    return null;
  }
  try {
    const c = JSON.parse(readFileSync(cache, "utf8"));
    if (c.stamp === stamp && typeof c.version === "string") return c.version;
  } catch {}
  const version = await firecrackerVersion(bin);
  if (version) {
    mkdirSync(join(home, "cache"), { recursive: true });
    writeFileAtomic(cache, JSON.stringify({ stamp, version }), 0o644);
  }
  return version;
}

/** The key parts for a Firecracker shape on this host, or why there is no template for it. */
export async function firecrackerPartsFor(
  home: string,
  env: Env,
  shape: TemplateShape,
): Promise<{ parts: FirecrackerKeyParts; installed: InstalledEnvironment } | { reason: string }> {
  if (shape.network !== "off") return { reason: "firecracker networking (a tap) boots cold" };
  if (jailerSettings(env, { uid: 0, gid: 0 }))
    return { reason: "no VM templates under the jailer (PYRO_FIRECRACKER_JAILER)" };
  const installed = findInstalled(home, shape.environment);
  if (!installed) return { reason: `environment ${shape.environment} is not installed` };
  if (installed.manifest.protocol_version < DETACHED_BOOT_PROTOCOL)
    return {
      reason: `environment ${shape.environment} was built for protocol ${installed.manifest.protocol_version}: its guest attaches its disk at boot (rebuild it for templates)`,
    };
  const version = await cachedFirecrackerVersion(home, env);
  if (!version) return { reason: "Firecracker's version is unknown" };
  return { parts: firecrackerKeyParts(installed, shape, version), installed };
}

function readMeta(dir: string): Meta | null {
  try {
    const parsed = v.safeParse(Meta, JSON.parse(readFileSync(join(dir, "meta.json"), "utf8")));
    return parsed.success ? parsed.output : null;
  } catch {
    return null;
  }
}

/** Published Firecracker templates (QEMU's have another meta and are skipped). */
function published(home: string): { dir: string; meta: Meta }[] {
  const root = templatesDir(home);
  if (!existsSync(root)) return [];
  const out: { dir: string; meta: Meta }[] = [];
  for (const name of readdirSync(root)) {
    if (name.startsWith(".")) continue;
    const meta = readMeta(join(root, name));
    if (meta) out.push({ dir: join(root, name), meta });
  }
  return out;
}

const sameShape = (a: FirecrackerKeyParts, b: FirecrackerKeyParts) =>
  a.environment === b.environment && a.vcpu_count === b.vcpu_count && a.mem_mib === b.mem_mib;

function staleReason(want: FirecrackerKeyParts, have: FirecrackerKeyParts): string {
  for (const k of Object.keys(want) as (keyof FirecrackerKeyParts)[]) {
    if (want[k] !== have[k])
      return `made with another ${k.replaceAll("_", " ")} (${String(have[k]).slice(0, 16)})`;
  }
  return "made for another key";
}

/**
 * The template for these parts, verified: `state` and `firecracker.json` hashed on every use,
 * `mem` once per (size, mtime, ctime, dev, inode). Never makes one.
 */
export async function findFirecrackerTemplate(
  home: string,
  parts: FirecrackerKeyParts,
): Promise<TemplateStatus> {
  const key = firecrackerTemplateKey(parts);
  const dir = join(templatesDir(home), key);
  if (!existsSync(dir)) {
    const failure = recordedFailure(home, key);
    if (failure) return { status: "broken", key, reason: `making it failed: ${failure.reason}` };
    const older = published(home).find((t) => sameShape(t.meta.parts, parts));
    if (older) return { status: "stale", key, reason: staleReason(parts, older.meta.parts) };
    return { status: "missing", key, reason: "no template made yet" };
  }
  const meta = readMeta(dir);
  if (!meta || meta.key !== key)
    return { status: "broken", key, reason: "its meta.json is missing or invalid" };
  const files = [
    [STATE, meta.state],
    [MEM, meta.mem],
    [TEMPLATE_DESCRIPTOR, meta.descriptor],
  ] as const;
  for (const [f, m] of files) {
    let size: number;
    try {
      size = statSync(join(dir, f)).size;
    } catch {
      return { status: "broken", key, reason: `its ${f} file is missing` };
    }
    if (size !== m.bytes) return { status: "broken", key, reason: `its ${f} file has the wrong size` };
  }
  for (const [f, m] of [files[0], files[2]]) {
    if ((await sha256File(join(dir, f))) !== m.sha256)
      return { status: "broken", key, reason: `its ${f} file does not match its sha256` };
  }
  const mem = join(dir, MEM);
  const stampPath = join(dir, ".mem-verified");
  const stamp = stampOf(mem);
  if (!(existsSync(stampPath) && readFileSync(stampPath, "utf8") === stamp)) {
    if ((await sha256File(mem)) !== meta.mem.sha256)
      return { status: "broken", key, reason: "its mem file does not match its sha256" };
    writeFileAtomic(stampPath, stamp, 0o600);
  }
  return { status: "ready", key, dir, meta };
}

/** templates.ts ensureTemplate for a Firecracker shape. Never throws: a failure is the status. */
export async function ensureFirecrackerTemplate(
  ctx: { home: string; env: Env; progress: ProgressSink },
  shape: TemplateShape,
  opts: { retryFailed?: boolean } = {},
): Promise<EnsureResult> {
  const p = await firecrackerPartsFor(ctx.home, ctx.env, shape);
  if ("reason" in p) return { status: { status: "missing", key: "", reason: p.reason }, made: false };
  const first = await findFirecrackerTemplate(ctx.home, p.parts);
  if (first.status === "ready") return { status: first, made: false };
  const key = first.key;
  if (!opts.retryFailed) {
    const failure = recordedFailure(ctx.home, key);
    if (failure && Date.now() - failure.at < RETRY_AFTER_MS) return { status: first, made: false };
  }
  mkdirSync(templatesDir(ctx.home), { recursive: true, mode: 0o700 });
  return withLock(
    join(templatesDir(ctx.home), `.lock-${key}`),
    async () => {
      const again = await findFirecrackerTemplate(ctx.home, p.parts);
      if (again.status === "ready") return { status: again, made: false };
      sweep(ctx.home);
      if (again.status === "broken") dropTemplate(ctx.home, key);
      ctx.progress(`making a Firecracker VM template for ${shape.environment} (once)`);
      try {
        await makeFirecrackerTemplate(ctx.home, ctx.env, p.installed, p.parts, key);
        rmSync(failedPath(ctx.home, key), { force: true });
      } catch (err) {
        const reason = (err as Error).message;
        writeFileAtomic(failedPath(ctx.home, key), JSON.stringify({ at: Date.now(), reason }));
        return {
          status: { status: "broken" as const, key, reason: `making it failed: ${reason}` },
          made: false,
        };
      }
      for (const t of published(ctx.home)) {
        if (t.meta.key !== key && sameShape(t.meta.parts, p.parts)) dropTemplate(ctx.home, t.meta.key);
      }
      return { status: await findFirecrackerTemplate(ctx.home, p.parts), made: true };
    },
    bootTimeoutMs(ctx.env) * 2 + 60_000,
  );
}

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
    files: [STATE, MEM, TEMPLATE_DESCRIPTOR],
    meta: (f, makeMs): Meta => ({
      key,
      parts,
      state: f[STATE] as Meta["state"],
      mem: f[MEM] as Meta["mem"],
      descriptor: f[TEMPLATE_DESCRIPTOR] as Meta["descriptor"],
      made_at: new Date().toISOString(),
      make_ms: makeMs,
    }),
  });
}

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
