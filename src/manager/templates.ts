/**
 * VM templates (QEMU): a freshly booted, still-detached guest saved once, so workspaces start
 * by restoring it instead of booting (Kata Containers' VM templating). docs/templates.md.
 *
 * `<home>/templates/<key>/` holds
 * - `ram`: the guest RAM. The template boot maps it shared (the guest's pages land in the
 *   file); every clone maps it private (copy-on-write), so clones share its untouched pages
 *   through the page cache;
 * - `state`: the device state, saved with `x-ignore-shared` (no RAM in it: small);
 * - `meta.json`: the key's parts and both files' size and sha256.
 *
 * Invariants:
 * - The key is the sha256 of everything the saved machine depends on (templateKeyParts): the
 *   environment's kernel and rootfs (the agent is in the rootfs) digests, the protocol, QEMU's
 *   version, accelerator and CPU model, vCPUs, memory, the data disk's size, the network mode
 *   and TEMPLATE_FORMAT. A change to any of them is another key: the old template is never
 *   used (and is removed when the new one is made).
 * - A template is made in `.tmp-<key prefix>-<pid>-<rand>/` and renamed into place only when whole and
 *   fsynced; a make killed midway leaves only that temp dir (never read; swept by the next make).
 * - A published template is never modified (clones map it: a changed file would change their
 *   memory). Before each use `state` is hashed (small) and `ram` is hashed once, its verdict
 *   then cached by (size, mtime, ctime, dev, inode) like environments (env/store.ts).
 * - Making one runs under a per-key lock; other creates wait for it. A failed make is recorded
 *   (`.failed-<key>.json`) and not retried for an hour (or until `pyro prepare` asks), so a host
 *   where templates cannot work pays the failure once, not on every create.
 * - Any failure to make or use a template means a cold boot, and the record says which boot
 *   happened and why (`boot`, `boot_note`).
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { writeFileAtomic } from "../base/atomic.ts";
import { fault } from "../base/fault.ts";
import { pidAlive, withLock } from "../base/lock.ts";
import type { Env } from "../base/paths.ts";
import { mark } from "../base/profile.ts";
import type { ProgressSink } from "../base/progress.ts";
import { artifactsOf, findInstalled, type InstalledEnvironment, sha256File } from "../env/store.ts";
import { call } from "../protocol/call.ts";
import type { Connection } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { findQemu, qemuVersion } from "../vmm/qemu/binary.ts";
import { type BackendChoice, loadBackend } from "../vmm/select.ts";
import type { BootSpec, VmHandle } from "../vmm/types.ts";
import { bootTimeoutMs } from "./boot.ts";
import { fsyncPath } from "./disk-image.ts";
import { helloAgent } from "./handshake.ts";
import { usesTap } from "./network.ts";
import type { WorkspaceRecord } from "./record.ts";

/** Bump when what a template holds or how it is made changes: older ones are then never used. */
export const TEMPLATE_FORMAT = 2;
/** The size of every workspace data disk (the template's placeholder has the same). */
export const TEMPLATE_DATA_DISK_MIB = 8192;
/**
 * The first protocol whose guests boot detached (pyro-init leaves /dev/vdb alone; the host
 * sends sys.attach). An older environment's guest mounts its disk at boot: never a template.
 */
export const DETACHED_BOOT_PROTOCOL = 4;
/** A failed make is not retried sooner than this (`pyro prepare` retries at once). */
export const RETRY_AFTER_MS = 3_600_000;
/** How long the guest gets to notice the host closed its port before it is stopped. */
const DISCONNECT_SETTLE_MS = 500;

export const templatesDir = (home: string) => join(home, "templates");

/** The machine a template is for. */
export interface TemplateShape {
  environment: string;
  accelerator: "kvm" | "tcg";
  vcpu_count: number;
  mem_mib: number;
  /** "user": QEMU user-mode networking (slirp's fixed layout, the same for every guest) */
  network: "off" | "user";
  /** Absent: QEMU. Firecracker's templates are its snapshots (templates-firecracker.ts). */
  backend?: "firecracker";
}

const KeyParts = v.strictObject({
  format: v.number(),
  environment: v.string(),
  env_version: v.string(),
  kernel_sha256: v.string(),
  rootfs_sha256: v.string(),
  agent_sha256: v.nullable(v.string()),
  protocol_version: v.number(),
  qemu_version: v.string(),
  accelerator: v.picklist(["kvm", "tcg"]),
  cpu_model: v.string(),
  vcpu_count: v.number(),
  mem_mib: v.number(),
  data_disk_mib: v.number(),
  network: v.picklist(["off", "user"]),
});
export type TemplateKeyParts = v.InferOutput<typeof KeyParts>;

export const FileMeta = v.strictObject({
  bytes: v.number(),
  sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
});
const Meta = v.strictObject({
  key: v.string(),
  parts: KeyParts,
  ram: FileMeta,
  state: FileMeta,
  made_at: v.string(),
  make_ms: v.number(),
});
export type TemplateMeta = v.InferOutput<typeof Meta>;

/**
 * A VMM's version, cached in `<home>/cache/<name>-version.json` by the binary's path and stamp
 * (asking the binary costs a process start on every create otherwise).
 */
export async function cachedVersion(
  home: string,
  name: string,
  bin: string | null,
  ask: (bin: string) => Promise<string | null>,
): Promise<string | null> {
  if (!bin) return null;
  const cache = join(home, "cache", `${name}-version.json`);
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
  const version = await ask(bin);
  if (version) {
    mkdirSync(join(home, "cache"), { recursive: true });
    writeFileAtomic(cache, JSON.stringify({ stamp, version }), 0o644);
  }
  return version;
}

/** The key parts every template kind takes from its environment: what the guest runs. */
export function guestKeyParts(installed: InstalledEnvironment) {
  const m = installed.manifest;
  return {
    environment: m.name,
    env_version: m.version,
    kernel_sha256: m.kernel.sha256,
    rootfs_sha256: m.rootfs.sha256,
    agent_sha256: m.agent_sha256 ?? null,
    protocol_version: PROTOCOL_VERSION,
  };
}

export function keyParts(
  installed: InstalledEnvironment,
  shape: TemplateShape,
  qemu: string,
): TemplateKeyParts {
  return {
    format: TEMPLATE_FORMAT,
    ...guestKeyParts(installed),
    qemu_version: qemu,
    accelerator: shape.accelerator,
    // what the QEMU backend passes for a record's accelerator (qemu/argv.ts)
    cpu_model: shape.accelerator === "kvm" ? "host" : "max",
    vcpu_count: shape.vcpu_count,
    mem_mib: shape.mem_mib,
    data_disk_mib: TEMPLATE_DATA_DISK_MIB,
    network: shape.network,
  };
}

/** sha256 over the parts in a fixed order (a Firecracker key never equals a QEMU one: the parts differ). */
export function templateKey(parts: object): string {
  const ordered = Object.entries(parts).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return new Bun.CryptoHasher("sha256").update(JSON.stringify(ordered)).digest("hex");
}

/**
 * The template shape a workspace boots with, or why it boots cold. Only QEMU machines without
 * a tap network (an allow-list's per-workspace /30 is given by the kernel's ip= autoconfig).
 */
export function shapeOf(
  r: WorkspaceRecord,
  env: Env,
): { ok: true; shape: TemplateShape } | { ok: false; reason: string | null } {
  if (env.PYRO_TEMPLATES === "off") return { ok: false, reason: "PYRO_TEMPLATES=off" };
  if (r.backend === "firecracker" && r.accelerator === "kvm") {
    // every Firecracker network is a tap (its guest address is per workspace): cold
    if (r.network_policy !== "off") return { ok: false, reason: "firecracker networking (a tap) boots cold" };
    const { environment, vcpu_count, mem_mib } = r;
    const shape = { environment, accelerator: "kvm", vcpu_count, mem_mib, network: "off" } as const;
    return { ok: true, shape: { ...shape, backend: "firecracker" } };
  }
  // host: no machine
  if (r.backend !== "qemu" || !r.accelerator) return { ok: false, reason: null };
  if (usesTap(r)) return { ok: false, reason: "a tap network (egress allow-list) boots cold" };
  return {
    ok: true,
    shape: {
      environment: r.environment,
      accelerator: r.accelerator,
      vcpu_count: r.vcpu_count,
      mem_mib: r.mem_mib,
      network: r.network_policy === "off" ? "off" : "user",
    },
  };
}

export function stampOf(path: string): string {
  const s = statSync(path, { bigint: true });
  return `${s.size}:${s.mtimeNs}:${s.ctimeNs}:${s.dev}:${s.ino}`;
}

export type TemplateStatus =
  | { status: "ready"; key: string; dir: string; meta: Pick<TemplateMeta, "key" | "made_at" | "make_ms"> }
  | { status: "missing" | "stale" | "broken"; key: string; reason: string };

/**
 * What a backend's templates are (QEMU here, Firecracker in templates-firecracker.ts): the one
 * find / ensure / publish logic below serves both.
 */
export interface TemplateKind<P extends KindParts, M extends KindMeta<P>> {
  /** "a VM template", for progress */
  label: string;
  meta: v.GenericSchema<unknown, M>;
  /** same machine shape: a published template of another key for it is stale */
  sameShape(a: P, b: P): boolean;
  /** files hashed on every use (small), and the RAM file hashed once per file stamp */
  files(meta: M): { hashed: [string, FileMetaT][]; mem: [string, FileMetaT] };
  partsFor(
    home: string,
    env: Env,
    shape: TemplateShape,
  ): Promise<{ parts: P; installed: InstalledEnvironment } | { reason: string }>;
  make(home: string, env: Env, installed: InstalledEnvironment, parts: P, key: string): Promise<void>;
}
type KindParts = { environment: string; vcpu_count: number; mem_mib: number };
type KindMeta<P> = { key: string; parts: P; made_at: string; make_ms: number };

function readMeta<M>(schema: v.GenericSchema<unknown, M>, dir: string): M | null {
  try {
    const parsed = v.safeParse(schema, JSON.parse(readFileSync(join(dir, "meta.json"), "utf8")));
    return parsed.success ? parsed.output : null;
  } catch {
    return null;
  }
}

/** Published templates of one kind (their meta), any key; other kinds' metas do not parse. */
function published<M>(schema: v.GenericSchema<unknown, M>, home: string): { dir: string; meta: M }[] {
  const root = templatesDir(home);
  if (!existsSync(root)) return [];
  const out: { dir: string; meta: M }[] = [];
  for (const name of readdirSync(root)) {
    if (name.startsWith(".")) continue;
    const meta = readMeta(schema, join(root, name));
    if (meta) out.push({ dir: join(root, name), meta });
  }
  return out;
}

/** Why an older template for the same machine shape is not this key's: the first part that differs. */
function staleReason<P extends object>(want: P, have: P): string {
  for (const k of Object.keys(want) as (keyof P)[]) {
    if (want[k] !== have[k])
      return `made with another ${String(k).replaceAll("_", " ")} (${String(have[k]).slice(0, 16)})`;
  }
  return "made for another key";
}

export function failedPath(home: string, key: string): string {
  return join(templatesDir(home), `.failed-${key}.json`);
}

export function recordedFailure(home: string, key: string): { at: number; reason: string } | null {
  try {
    const f = JSON.parse(readFileSync(failedPath(home, key), "utf8"));
    return typeof f.at === "number" && typeof f.reason === "string" ? f : null;
  } catch {
    return null;
  }
}

/**
 * The template of `kind` for these key parts, verified: the small files hashed every time, the
 * RAM file once per (size, mtime, ctime, dev, inode). Never makes one.
 */
export async function findOf<P extends KindParts, M extends KindMeta<P>>(
  kind: TemplateKind<P, M>,
  home: string,
  parts: P,
): Promise<TemplateStatus> {
  const key = templateKey(parts);
  const dir = join(templatesDir(home), key);
  if (!existsSync(dir)) {
    const failure = recordedFailure(home, key);
    if (failure) return { status: "broken", key, reason: `making it failed: ${failure.reason}` };
    const older = published(kind.meta, home).find((t) => kind.sameShape(t.meta.parts, parts));
    if (older) return { status: "stale", key, reason: staleReason(parts, older.meta.parts) };
    return { status: "missing", key, reason: "no template made yet" };
  }
  const meta = readMeta(kind.meta, dir);
  if (!meta || meta.key !== key)
    return { status: "broken", key, reason: "its meta.json is missing or invalid" };
  const { hashed, mem } = kind.files(meta);
  for (const [f, m] of [...hashed, mem]) {
    let size: number;
    try {
      size = statSync(join(dir, f)).size;
    } catch {
      return { status: "broken", key, reason: `its ${f} file is missing` };
    }
    if (size !== m.bytes) return { status: "broken", key, reason: `its ${f} file has the wrong size` };
  }
  for (const [f, m] of hashed) {
    if ((await sha256File(join(dir, f))) !== m.sha256)
      return { status: "broken", key, reason: `its ${f} file does not match its sha256` };
  }
  const [memName, memMeta] = mem;
  const stampPath = join(dir, `.${memName}-verified`);
  const stamp = stampOf(join(dir, memName));
  if (!(existsSync(stampPath) && readFileSync(stampPath, "utf8") === stamp)) {
    if ((await sha256File(join(dir, memName))) !== memMeta.sha256)
      return { status: "broken", key, reason: `its ${memName} file does not match its sha256` };
    writeFileAtomic(stampPath, stamp, 0o600);
  }
  return { status: "ready", key, dir, meta };
}

export const findTemplate = (home: string, parts: TemplateKeyParts) => findOf(qemuKind, home, parts);

/** The installed environment a shape's template boots, or why it cannot have one. */
export function templatable(home: string, shape: TemplateShape): InstalledEnvironment | { reason: string } {
  const installed = findInstalled(home, shape.environment);
  if (!installed) return { reason: `environment ${shape.environment} is not installed` };
  if (installed.manifest.protocol_version < DETACHED_BOOT_PROTOCOL)
    return {
      reason: `environment ${shape.environment} was built for protocol ${installed.manifest.protocol_version}: its guest attaches its disk at boot (rebuild it for templates)`,
    };
  return installed;
}

/** The key parts for a shape on this host, or why there are none. */
export async function partsFor(
  home: string,
  env: Env,
  shape: TemplateShape,
): Promise<{ parts: TemplateKeyParts; installed: InstalledEnvironment } | { reason: string }> {
  const installed = templatable(home, shape);
  if ("reason" in installed) return installed;
  const qemu = await cachedVersion(home, "qemu", findQemu(env), qemuVersion);
  if (!qemu) return { reason: "QEMU's version is unknown" };
  return { parts: keyParts(installed, shape, qemu), installed };
}

/** Remove a template that failed in use (the next need makes a new one). */
export function dropTemplate(home: string, key: string): void {
  const root = templatesDir(home);
  const doomed = join(root, `.old-${key}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`);
  try {
    renameSync(join(root, key), doomed);
  } catch {
    return;
  }
  rmSync(doomed, { recursive: true, force: true });
}

/** Remove debris of makes that died (temp dirs of dead pids) and unpublished leftovers. */
export function sweep(home: string): void {
  const root = templatesDir(home);
  if (!existsSync(root)) return;
  for (const name of readdirSync(root)) {
    const m = /^\.(?:tmp|old)-[0-9a-f]{12,64}-(\d+)-/.exec(name);
    if (m && !pidAlive(Number(m[1]))) rmSync(join(root, name), { recursive: true, force: true });
  }
}

export interface EnsureResult {
  status: TemplateStatus;
  /** made by this call */
  made: boolean;
}

/**
 * Make sure the template for `shape` exists (made under its lock if missing; other callers
 * wait). Never throws: a failure is the status (`broken`) with the reason.
 */
export async function ensureTemplate(
  ctx: { home: string; env: Env; progress: ProgressSink },
  shape: TemplateShape,
  opts: { retryFailed?: boolean } = {},
): Promise<EnsureResult> {
  if (shape.backend === "firecracker")
    return (await import("./templates-firecracker.ts")).ensureFirecrackerTemplate(ctx, shape, opts);
  return ensureOf(qemuKind, ctx, shape, opts);
}

/** ensureTemplate for one kind. */
export async function ensureOf<P extends KindParts, M extends KindMeta<P>>(
  kind: TemplateKind<P, M>,
  ctx: { home: string; env: Env; progress: ProgressSink },
  shape: TemplateShape,
  opts: { retryFailed?: boolean },
): Promise<EnsureResult> {
  const p = await kind.partsFor(ctx.home, ctx.env, shape);
  if ("reason" in p) return { status: { status: "missing", key: "", reason: p.reason }, made: false };
  const first = await findOf(kind, ctx.home, p.parts);
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
      const again = await findOf(kind, ctx.home, p.parts);
      if (again.status === "ready") return { status: again, made: false };
      sweep(ctx.home);
      if (again.status === "broken") dropTemplate(ctx.home, key);
      ctx.progress(`making ${kind.label} for ${shape.environment} (once)`);
      try {
        await kind.make(ctx.home, ctx.env, p.installed, p.parts, key);
        rmSync(failedPath(ctx.home, key), { force: true });
      } catch (err) {
        const reason = (err as Error).message;
        writeFileAtomic(failedPath(ctx.home, key), JSON.stringify({ at: Date.now(), reason }));
        return {
          status: { status: "broken" as const, key, reason: `making it failed: ${reason}` },
          made: false,
        };
      }
      // the template it replaces (same machine shape, older key) goes
      for (const t of published(kind.meta, ctx.home)) {
        if (t.meta.key !== key && kind.sameShape(t.meta.parts, p.parts)) dropTemplate(ctx.home, t.meta.key);
      }
      return { status: await findOf(kind, ctx.home, p.parts), made: true };
    },
    // a make is a boot plus a save; others wait for it rather than make their own
    bootTimeoutMs(ctx.env) * 2 + 60_000,
  );
}

/** Requests the template's agent answers before it is saved (see warmUp). */
const WARM_UP_ROUNDS = 60;

/**
 * Run the agent's request path (frame parsing, request validation, the answer) many times in
 * the template before it is saved, so the JavaScript engine's tiered JIT has compiled it by
 * then: every clone inherits the compiled code with the template's RAM instead of compiling it
 * again under emulation (under TCG a clone's first requests cost seconds otherwise).
 */
async function warmUp(conn: Connection): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < WARM_UP_ROUNDS; i++) {
    await call(conn, { op: "ping" });
    if (i % 4 === 0) await call(conn, { op: "info" });
    if (i % 10 === 0) mark(`template.warm ${i} ${Math.round(performance.now() - t0)}`);
  }
}

/** What one backend adds to the common make of a template (makeTemplateDir). */
export interface TemplateMake {
  backend: BackendChoice;
  /** the guest RAM file's name in the template dir (mapped shared while the template runs) */
  memName: string;
  network: boolean;
  /** with the detached agent's connection still open (e.g. warm-up) */
  withAgent?: (conn: Connection) => Promise<void>;
  /** after the connection is closed, before the save: files to write beside it (name → text) */
  beforeSave?: (handle: VmHandle) => Promise<Record<string, string>>;
  /** the files fsynced and hashed into meta.json once the machine is saved: meta field → file name */
  files: Record<string, string>;
}
type FileMetaT = v.InferOutput<typeof FileMeta>;

/**
 * Boot a template machine in a temp dir under templates/ (RAM in `memName`, shared; a
 * placeholder data disk of a workspace disk's size, never mounted), wait for the agent's hello
 * (not attached), close the channel, save the device state (the RAM stays in its file), kill
 * the VMM, hash the files into meta.json and publish by renaming the dir to `key`. A make that
 * dies leaves only its `.tmp-` dir, which the next sweep removes: never a half template.
 */
export async function makeTemplateDir(
  home: string,
  env: Env,
  installed: InstalledEnvironment,
  parts: KindParts & { data_disk_mib: number },
  key: string,
  m: TemplateMake,
): Promise<void> {
  const t0 = Date.now();
  const root = templatesDir(home);
  // short: the VMM's sockets live under it (sun_path holds 107 bytes)
  const tmp = join(root, `.tmp-${key.slice(0, 12)}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`);
  mkdirSync(join(tmp, "run"), { recursive: true, mode: 0o700 });
  try {
    const disk = join(tmp, "placeholder.ext4");
    const { createDataDisk } = await import("../env/build/datadisk.ts");
    await createDataDisk(disk, parts.data_disk_mib);
    const deadline = Date.now() + bootTimeoutMs(env);
    const spec: BootSpec = {
      workspaceId: `template-${key.slice(0, 12)}`,
      runDir: join(tmp, "run"),
      workspaceDir: tmp,
      dataDiskPath: disk,
      environment: artifactsOf(installed),
      vcpuCount: parts.vcpu_count,
      memMib: parts.mem_mib,
      network: m.network,
      consoleLogPath: join(tmp, "console.log"),
      bootTimeoutMs: bootTimeoutMs(env),
      memoryFile: { path: join(tmp, m.memName), shared: true },
    };
    const backend = await loadBackend(m.backend);
    const handle = await backend.boot(spec);
    let extra: Record<string, string> = {};
    try {
      const channel = await handle.connect(deadline);
      const { conn, hello } = await helloAgent(channel, deadline, undefined, installed.manifest.name);
      // A guest that attached itself at boot has the placeholder disk mounted: never a template.
      if ((hello as { attached?: boolean }).attached !== false) {
        conn.close();
        throw new PyroError(
          "AGENT_VERSION_MISMATCH",
          `the agent of ${installed.manifest.name} attaches its disk at boot (built before detached boots)`,
        );
      }
      await m.withAgent?.(conn);
      conn.close();
      await Bun.sleep(DISCONNECT_SETTLE_MS);
      extra = (await m.beforeSave?.(handle)) ?? {};
      fault("template.booted", () => handle.pid);
      if (!handle.saveState) throw new PyroError("BACKEND_UNAVAILABLE", "the backend cannot save a machine");
      await handle.saveState(join(tmp, "state"), Date.now() + 120_000, { ignoreShared: true });
    } finally {
      handle.kill();
      await handle.exited;
    }
    fault("template.saved");
    for (const [name, text] of Object.entries(extra)) writeFileSync(join(tmp, name), text, { mode: 0o600 });
    rmSync(disk, { force: true });
    rmSync(join(tmp, "run"), { recursive: true, force: true });
    const files: Record<string, FileMetaT> = {};
    for (const [field, f] of Object.entries(m.files)) {
      fsyncPath(join(tmp, f));
      files[field] = { bytes: statSync(join(tmp, f)).size, sha256: await sha256File(join(tmp, f)) };
    }
    const meta = { key, parts, ...files, made_at: new Date().toISOString(), make_ms: Date.now() - t0 };
    writeFileAtomic(join(tmp, "meta.json"), JSON.stringify(meta, null, 2));
    // the hash just computed is the verdict for this very file
    writeFileSync(join(tmp, `.${m.memName}-verified`), stampOf(join(tmp, m.memName)), { mode: 0o600 });
    fsyncPath(tmp);
    fault("template.written");
    renameSync(tmp, join(root, key));
    fsyncPath(root);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The QEMU template: RAM in `ram`, device state in `state`; the agent warmed up first. */
function makeTemplate(
  home: string,
  env: Env,
  installed: InstalledEnvironment,
  parts: TemplateKeyParts,
  key: string,
): Promise<void> {
  return makeTemplateDir(home, env, installed, parts, key, {
    backend: { name: "qemu", accelerator: parts.accelerator },
    memName: "ram",
    network: parts.network === "user",
    withAgent: warmUp,
    files: { ram: "ram", state: "state" },
  });
}

/** QEMU's templates: RAM in `ram` (hashed once per stamp), device state in `state`. */
const qemuKind: TemplateKind<TemplateKeyParts, TemplateMeta> = {
  label: "a VM template",
  meta: Meta,
  sameShape: (a, b) =>
    a.environment === b.environment &&
    a.vcpu_count === b.vcpu_count &&
    a.mem_mib === b.mem_mib &&
    a.network === b.network &&
    a.accelerator === b.accelerator,
  files: (m) => ({ hashed: [["state", m.state]], mem: ["ram", m.ram] }),
  partsFor,
  make: makeTemplate,
};

/** What the supervisor boots a workspace from: a verified template's files, or why cold. */
export async function templateFor(
  home: string,
  env: Env,
  r: WorkspaceRecord,
): Promise<{ ok: true; key: string; ram: string; state: string } | { ok: false; reason: string | null }> {
  const s = shapeOf(r, env);
  if (!s.ok) return s;
  return readyTemplate(home, env, s.shape);
}

/** The verified files of the ready template for `shape`, or why there is none (never makes one). */
export async function readyTemplate(
  home: string,
  env: Env,
  shape: TemplateShape,
): Promise<{ ok: true; key: string; ram: string; state: string } | { ok: false; reason: string | null }> {
  if (shape.backend === "firecracker")
    return (await import("./templates-firecracker.ts")).readyFirecrackerTemplate(home, env, shape);
  const p = await partsFor(home, env, shape);
  if ("reason" in p) return { ok: false, reason: p.reason };
  const t = await findTemplate(home, p.parts);
  if (t.status !== "ready") return { ok: false, reason: `template ${t.status}: ${t.reason}` };
  return { ok: true, key: t.key, ram: join(t.dir, "ram"), state: join(t.dir, "state") };
}

/**
 * Did a restore from a template fail because of the template (then boot cold instead), or
 * was the VMM killed from outside (a signal: the boot failed, as a cold boot's would)?
 */
export function templateMayBeAtFault(err: unknown): boolean {
  const e = err as { code?: string; message?: string; details?: { exit?: unknown } };
  // out of time: no room for a cold boot either
  if (e?.code === "GUEST_BOOT_TIMEOUT") return false;
  if (typeof e?.details?.exit === "string" && e.details.exit.startsWith("SIG")) return false;
  return !/exited during boot \(code null\)/.test(e?.message ?? "");
}

/** `doctor`: every installed environment's template for the default machine shape. */
export async function templateReport(
  home: string,
  env: Env,
  shape: Omit<TemplateShape, "environment">,
  environments: string[],
): Promise<{ environment: string; status: TemplateStatus["status"] | "off"; reason: string | null }[]> {
  const out = [];
  for (const name of environments) {
    if (env.PYRO_TEMPLATES === "off") {
      out.push({ environment: name, status: "off" as const, reason: "PYRO_TEMPLATES=off" });
      continue;
    }
    const p = await partsFor(home, env, { ...shape, environment: name });
    if ("reason" in p) {
      out.push({ environment: name, status: "missing" as const, reason: p.reason });
      continue;
    }
    const t = await findTemplate(home, p.parts);
    out.push({ environment: name, status: t.status, reason: t.status === "ready" ? null : t.reason });
  }
  return out;
}
