/** Workspace lifecycle: create/list/status/update/logs/exec/stop/start/delete. */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fault } from "../base/fault.ts";
import { mark } from "../base/profile.ts";
import { withImageDefaults } from "../env/image/defaults.ts";
import { ensureEnvironment } from "../env/prepare.ts";
import { findInstalled } from "../env/store.ts";
import { PyroError } from "../protocol/errors.ts";
import { chooseBackend } from "../vmm/select.ts";
import { autoPauseSetting } from "./auto-pause.ts";
import { bootTimeoutMs } from "./boot.ts";
import { acquireSupervisor, callWorkspace } from "./client.ts";
import { type Ctx, maxActive } from "./context.ts";
import { type ExecInput, type ExecResult, execOn } from "./exec.ts";
import { newWorkspaceId, validateLabels, validateName } from "./ids.ts";
import { withLock } from "./lock.ts";
import { checkNetworkInput, networkRefusals, resolveAllowedHosts } from "./network.ts";
import {
  BOOT_ERROR_FILE,
  consoleLogPath,
  dataDiskPath,
  historyPath,
  hostRootDir,
  logsDir,
  READY_FILE,
  runDir,
  supervisorLogPath,
} from "./paths.ts";
import { discardPausedState } from "./paused-state.ts";
import { type Project, projectSeed } from "./project.ts";
import {
  type CorruptRecord,
  publishRecord,
  readRecord,
  scanRecords,
  type WorkspaceRecord,
} from "./record.ts";
import {
  resolveSecrets,
  type SecretInput,
  secretDigests,
  storeSecrets,
  workspaceRedactor,
} from "./secrets.ts";
import { selfCommand } from "./self.ts";
import { captureBaselineSnapshot } from "./snapshots.ts";
import {
  checkNameFree,
  clearRunMarks,
  findRecord,
  inProgress,
  lookupWorkspace,
  pidOfWorkspace,
  registryLock,
  removeWorkspaceFiles,
  repairRecord,
  resolveWorkspace,
  sweepDebris,
  updateRecord,
  withLifecycle,
} from "./store.ts";
import { Teardown } from "./teardown.ts";
import { ensureTemplate, shapeOf, TEMPLATE_DATA_DISK_MIB } from "./templates.ts";
import { classifySource, importIntoWorkspace, importTar } from "./transfer.ts";

export const DEFAULT_ENVIRONMENT = "debian:12";
export const DEFAULT_VCPU = 1;
export const DEFAULT_MEM_MIB = 1024;
export const DEFAULT_TTL_SECONDS = 600;
/** Every workspace disk's size; a VM template's placeholder disk has the same (templates.ts). */
export const DATA_DISK_MIB = TEMPLATE_DATA_DISK_MIB;

export interface CreateInput {
  environment: string;
  seed_path?: string;
  /** src/manager/auto-pause.ts */
  auto_pause_after_seconds?: number;
  name?: string;
  labels?: Record<string, string>;
  vcpu_count?: number;
  mem_mib?: number;
  ttl_seconds?: number;
  network_policy?: "off" | "egress" | "egress+published-ports";
  /** egress allow-list (src/manager/network.ts); implies egress */
  allow_hosts?: string[];
  allow_cidrs?: string[];
  allow_host_compat?: boolean;
  /** literal values or host files (src/manager/secrets.ts) */
  secrets?: SecretInput[];
  /**
   * Seed from this project's git-tracked files when seed_path is absent (src/manager/project.ts).
   * Not an input field of workspace_create: the MCP server sets it (project-aware startup).
   */
  project?: Project;
}

const now = () => new Date().toISOString();

/** The workspace's VMM pid as its record has it (for PYRO_FAULT_PROC=vmm, src/base/fault.ts). */
export const vmmOf = (home: string, id: string) => () => {
  try {
    return readRecord(home, id)?.vmm_pid;
  } catch {
    return null;
  }
};

/**
 * Workspaces that hold a machine slot. A corrupt record counts only while a process of its
 * own is really running (its state cannot be trusted; its processes can be checked).
 */
async function activeCount(home: string): Promise<number> {
  const { records, corrupt } = scanRecords(home);
  let n = corrupt.filter((c) => corruptRunning(home, c)).length;
  for (const r of records) {
    const cur = await repairRecord(home, r);
    if (cur?.state === "started" || cur?.state === "created") n++;
  }
  return n;
}

/**
 * The live processes of a corrupt workspace. Supervisors: the pid in run/supervisor.ready
 * (written by the supervisor once up) and the raw record's supervisor_pid. Machines: the raw
 * record's vmm_pid and the supervisors' children (the VMM or host agent; setpriv execs, so the
 * child's pid is the VMM's). Each is kept only when its cmdline names the workspace.
 */
function corruptProcesses(home: string, c: CorruptRecord): { supervisors: number[]; vmms: number[] } {
  const id = c.workspace_id;
  const sup = new Set<unknown>([c.raw?.supervisor_pid]);
  try {
    sup.add(Number(readFileSync(join(runDir(home, id), READY_FILE), "utf8").trim()));
  } catch {}
  const supervisors = [...sup].filter((p) => pidOfWorkspace(p, id)) as number[];
  const vmm = new Set<unknown>([c.raw?.vmm_pid]);
  if (supervisors.length) {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8") as string;
        // fields after the parenthesised command: state ppid ...
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (supervisors.includes(ppid)) vmm.add(Number(entry));
      } catch {}
    }
  }
  const vmms = [...vmm].filter(
    (p) => pidOfWorkspace(p, id) && !supervisors.includes(p as number),
  ) as number[];
  return { supervisors, vmms };
}

/** Does a corrupt workspace still have a running machine (or supervisor)? */
function corruptRunning(home: string, c: CorruptRecord): boolean {
  const { supervisors, vmms } = corruptProcesses(home, c);
  return supervisors.length + vmms.length > 0;
}

/** SIGTERM, wait up to graceMs for them to exit, then SIGKILL whatever is left (re-verified). */
async function terminate(pids: number[], id: string, graceMs: number): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    for (const p of pids.filter((p) => pidOfWorkspace(p, id))) {
      try {
        process.kill(p, sig);
      } catch {}
    }
  };
  signal("SIGTERM");
  const deadline = Date.now() + graceMs;
  while (pids.some((p) => pidOfWorkspace(p, id)) && Date.now() < deadline) await Bun.sleep(30);
  signal("SIGKILL");
  const killDeadline = Date.now() + 5000;
  while (pids.some((p) => pidOfWorkspace(p, id)) && Date.now() < killDeadline) await Bun.sleep(30);
}

/**
 * Stop a corrupt workspace's machine: SIGTERM its supervisor (which shuts the machine down
 * as on any stop; its record writes fail harmlessly), then make sure the VMM / host agent is
 * gone too (SIGTERM lets a host agent kill its command groups; SIGKILL after a grace).
 */
async function stopCorrupt(home: string, c: CorruptRecord): Promise<void> {
  const { supervisors, vmms } = corruptProcesses(home, c);
  await terminate(supervisors, c.workspace_id, 30000);
  await terminate(vmms, c.workspace_id, 3000);
}

/**
 * A QEMU workspace boots from its environment's VM template (src/manager/templates.ts): made
 * here, before the supervisor starts, the first time one is needed (the supervisor only uses
 * a ready one). Never fails the create: without a template the machine boots cold.
 */
async function ensureTemplateFor(ctx: Ctx, r: WorkspaceRecord | null): Promise<void> {
  if (!r) return;
  const s = shapeOf(r, ctx.env);
  if (!s.ok) return;
  try {
    await ensureTemplate(ctx, s.shape);
  } catch (err) {
    // e.g. another process still making it past the lock's wait: this boot goes cold
    ctx.progress(`no VM template (${(err as Error).message}); booting cold`);
  }
}

/** A spawned supervisor: `ready()` waits until it says ready (or why not). */
export interface SupervisorLaunch {
  /** A held supervisor (spawnSupervisor's `hold`) starts now; a no-op otherwise. */
  go(): void;
  /** Wait until it says ready (or why not); a held one is told to go first. */
  ready(): Promise<void>;
  /** A held supervisor that was never told to go: end it (it has touched nothing). */
  cancel(): void;
}

/**
 * Spawn the detached supervisor; `resume`: restore the paused state. `hold`: it loads its
 * modules (a few hundred ms: a process start) and then waits for `go()`, so a create spawns it
 * first and makes the data disk and checks the template meanwhile. A held supervisor whose
 * creator dies or cancels sees its stdin close and exits without touching anything.
 */
export function spawnSupervisor(
  ctx: Ctx,
  id: string,
  opts: { resume?: boolean; hold?: boolean } = {},
): SupervisorLaunch {
  const run = runDir(ctx.home, id);
  mkdirSync(run, { recursive: true, mode: 0o700 });
  mkdirSync(logsDir(ctx.home, id), { recursive: true, mode: 0o700 });
  // the marks a previous machine left (a reset's held supervisor: at the go, not before)
  const clearMarks = () => {
    rmSync(join(run, READY_FILE), { force: true });
    rmSync(join(run, BOOT_ERROR_FILE), { force: true });
  };
  if (!opts.hold) clearMarks();
  const logFd = openSync(supervisorLogPath(ctx.home, id), "a", 0o600);
  const env = { ...ctx.env, PYRO_HOME: ctx.home } as Record<string, string>;
  const args = [
    "__supervise",
    "--id",
    id,
    ...(opts.resume ? ["--resume"] : []),
    ...(opts.hold ? ["--hold"] : []),
  ];
  const proc = Bun.spawn([...selfCommand(), ...args], {
    env,
    stdin: opts.hold ? "pipe" : "ignore",
    stdout: logFd,
    stderr: logFd,
    detached: true, // its own session: a Ctrl-C in the creating terminal must not reach it
  });
  closeSync(logFd);
  proc.unref();
  mark("supervisor.spawned");
  let exited = false;
  proc.exited.then(() => {
    exited = true;
  });
  let held = !!opts.hold;
  const release = (byte: string) => {
    if (!held) return;
    held = false;
    const stdin = proc.stdin as import("bun").FileSink;
    try {
      if (byte) stdin.write(byte);
      stdin.end();
    } catch {} // it is gone already: ready() says how
  };
  return {
    go: () => release("g"),
    cancel() {
      if (!held) return;
      release("");
      try {
        proc.kill("SIGKILL");
      } catch {}
    },
    async ready() {
      if (held) clearMarks();
      release("g");
      mark("supervisor.go");
      const deadline = Date.now() + bootTimeoutMs(ctx.env) + 15000;
      for (;;) {
        if (existsSync(join(run, READY_FILE))) return;
        const errFile = join(run, BOOT_ERROR_FILE);
        if (existsSync(errFile)) {
          const { errorFromShape } = await import("../protocol/errors.ts");
          throw errorFromShape(JSON.parse(readFileSync(errFile, "utf8")));
        }
        if (exited) {
          const tail = existsSync(supervisorLogPath(ctx.home, id))
            ? readFileSync(supervisorLogPath(ctx.home, id), "utf8").slice(-2000)
            : "";
          throw new PyroError(
            "SUPERVISOR_UNREACHABLE",
            `the workspace supervisor exited before it was ready${proc.signalCode ? ` (${proc.signalCode})` : ""}`,
            {
              details: { log_tail: tail },
            },
          );
        }
        if (Date.now() > deadline) {
          proc.kill("SIGKILL");
          throw new PyroError("GUEST_BOOT_TIMEOUT", "the workspace did not become ready in time");
        }
        await Bun.sleep(10);
      }
    },
  };
}

export async function createWorkspace(ctx: Ctx, input: CreateInput): Promise<WorkspaceRecord> {
  mark("create.begin");
  const name = input.name === undefined ? null : validateName(input.name);
  const labels = validateLabels(input.labels ?? {});
  const vcpu = input.vcpu_count ?? DEFAULT_VCPU;
  const mem = input.mem_mib ?? DEFAULT_MEM_MIB;
  const ttl = input.ttl_seconds ?? DEFAULT_TTL_SECONDS;
  const secrets = resolveSecrets(input.secrets); // every secret checked before anything is made
  const seed = input.seed_path ? classifySource(input.seed_path) : null;
  const project = !seed && input.project ? projectSeed(input.project) : null;
  const net = checkNetworkInput(input);
  // resolvable now, or the create fails before anything is made (re-resolved at each boot)
  if (net.allow) await resolveAllowedHosts(net.allow.hosts, ctx.env);
  const installed = await ensureEnvironment(ctx, input.environment, {
    allowMissing: input.allow_host_compat ?? false,
  });
  const choice = await chooseBackend({
    home: ctx.home,
    env: ctx.env,
    allowHostCompat: input.allow_host_compat ?? false,
    kernelPath: installed ? join(installed.dir, installed.manifest.kernel.file) : null,
    network: net.policy !== "off",
  });
  const autoPause = autoPauseSetting(choice.name, input.auto_pause_after_seconds); // before anything is made
  mark("create.checked");
  if (net.allow && choice.name === "host") {
    throw new PyroError(
      "NETWORK_UNSUPPORTED",
      "host compat cannot restrict egress: commands use the host's network",
      { hint: "egress allow-lists need a guest backend (QEMU or Firecracker)" },
    );
  }
  const id = newWorkspaceId();
  const td = new Teardown();
  try {
    await withLock(registryLock(ctx.home), async () => {
      sweepDebris(ctx.home);
      if (name) checkNameFree(ctx.home, name);
      const limit = maxActive(ctx.env);
      if ((await activeCount(ctx.home)) >= limit) {
        throw new PyroError("WORKSPACE_LIMIT_REACHED", `at most ${limit} workspaces may run at once`, {
          hint: "stop or delete one (`pyro workspace list`), or raise PYRO_MAX_ACTIVE_VMS",
        });
      }
      td.push("workspace files", () => removeWorkspaceFiles(ctx.home, id));
      const t = now();
      // the directory and its record appear together (a crash leaves no record-less directory)
      publishRecord(ctx.home, {
        workspace_id: id,
        name,
        labels,
        environment: input.environment,
        state: "created",
        created_at: t,
        last_activity_at: t,
        expires_at: ttl > 0 ? new Date(Date.now() + ttl * 1000).toISOString() : null,
        execution_mode: choice.name === "host" ? "host_compat" : "guest",
        backend: choice.name,
        accelerator: choice.accelerator,
        network_policy: net.policy,
        ...(net.allow ? { allow_hosts: net.allow.hosts, allow_cidrs: net.allow.cidrs } : {}),
        workspace_seed: seed
          ? { origin_kind: seed.kind, origin_ref: seed.path }
          : project
            ? {
                origin_kind: "project",
                origin_ref: project.origin_ref,
                ...(project.skipped_count
                  ? { skipped: project.skipped, skipped_count: project.skipped_count }
                  : {}),
              }
            : { origin_kind: "empty", origin_ref: null },
        vcpu_count: vcpu,
        mem_mib: mem,
        ttl_seconds: ttl,
        command_count: 0,
        ...(autoPause ? { auto_pause_after_seconds: autoPause } : {}),
        ...(secrets.length ? { secrets: secretDigests(secrets) } : {}),
        // until cleared below: this process dying discards the workspace (store.ts repairRecord)
        in_progress: inProgress("create"),
      });
    });
    fault("create.record");
    mark("create.record");
    // A guest's supervisor starts now and loads while the disk and the template are made
    // (it waits for the go); host compat's has nothing to overlap.
    const launch = choice.name === "host" ? null : spawnSupervisor(ctx, id, { hold: true });
    td.push("held supervisor", () => launch?.cancel());
    storeSecrets(ctx.home, id, secrets);
    if (choice.name === "host") mkdirSync(hostRootDir(ctx.home, id), { recursive: true });
    else {
      const { createDataDisk } = await import("../env/build/datadisk.ts");
      await createDataDisk(dataDiskPath(ctx.home, id), DATA_DISK_MIB);
    }
    fault("create.disk");
    mark("create.disk");
    td.push("supervisor", async () => {
      const r = readRecord(ctx.home, id);
      if (r?.supervisor_pid) {
        try {
          process.kill(r.supervisor_pid, "SIGKILL");
        } catch {}
      }
    });
    await ensureTemplateFor(ctx, readRecord(ctx.home, id));
    mark("create.template");
    ctx.progress(
      `booting ${input.environment} (${choice.name}${choice.accelerator ? `/${choice.accelerator}` : ""})...`,
    );
    await (launch ?? spawnSupervisor(ctx, id)).ready();
    mark("create.ready");
    const started = readRecord(ctx.home, id) as WorkspaceRecord;
    // An unseeded workspace starts empty: its baseline is the empty tree, which the agent
    // assumes when none was captured, so create skips the capture (and its cost) then.
    if (seed) {
      ctx.progress(`seeding /workspace from ${seed.path}`);
      // the diff baseline comes from the seed stream itself (nothing is read back)
      await importIntoWorkspace(ctx.home, started, seed.path, "/workspace", { baseline: true });
      fault("create.seed", vmmOf(ctx.home, id));
      await captureBaselineSnapshot(ctx.home, started);
    } else if (project) {
      ctx.progress(`seeding /workspace from ${project.origin_ref}`);
      await importTar(ctx.home, started, project.pack(), "/workspace", { baseline: true });
      fault("create.seed", vmmOf(ctx.home, id));
      await captureBaselineSnapshot(ctx.home, started);
    }
    fault("create.done", vmmOf(ctx.home, id));
    const done = await updateRecord(ctx.home, id, (x) => ({ ...x, in_progress: null }));
    td.release();
    return done;
  } catch (err) {
    await td.run();
    throw err;
  }
}

/** A corrupt record as `list` shows it: its id, the name it still claims, why, and whether it runs. */
export interface CorruptListing {
  workspace_id: string;
  name: string | null;
  state: "corrupt";
  corrupt_reason: string;
  running: boolean;
}

/** Valid records by last activity (newest first), and the corrupt ones apart (by id). */
export async function listWorkspaces(
  ctx: Ctx,
): Promise<{ records: WorkspaceRecord[]; corrupt: CorruptListing[] }> {
  const { records, corrupt } = scanRecords(ctx.home);
  const out: WorkspaceRecord[] = [];
  for (const r of records) {
    const cur = await repairRecord(ctx.home, r);
    if (cur) out.push(cur);
  }
  return {
    records: out.sort((a, b) => b.last_activity_at.localeCompare(a.last_activity_at)),
    corrupt: corrupt.map((c) => ({
      workspace_id: c.workspace_id,
      name: c.name,
      state: "corrupt",
      corrupt_reason: c.reason,
      running: corruptRunning(ctx.home, c),
    })),
  };
}

export async function workspaceStatus(ctx: Ctx, ref: string): Promise<WorkspaceRecord> {
  return resolveWorkspace(ctx.home, ref);
}

export async function updateWorkspace(
  ctx: Ctx,
  ref: string,
  input: {
    name?: string | null;
    labels?: Record<string, string>;
    clear_labels?: string[];
    auto_pause_after_seconds?: number;
  },
): Promise<WorkspaceRecord> {
  const r = await resolveWorkspace(ctx.home, ref);
  const autoPause = autoPauseSetting(r.backend, input.auto_pause_after_seconds);
  const name = input.name === undefined || input.name === null ? undefined : validateName(input.name);
  if (input.labels) validateLabels(input.labels);
  return withLock(registryLock(ctx.home), async () => {
    if (name) checkNameFree(ctx.home, name, r.workspace_id);
    return updateRecord(ctx.home, r.workspace_id, (cur) => {
      const labels = { ...cur.labels, ...(input.labels ?? {}) };
      for (const k of input.clear_labels ?? []) delete labels[k];
      validateLabels(labels);
      return {
        ...cur,
        name: input.name === null ? null : (name ?? cur.name),
        labels,
        ...(autoPause !== undefined ? { auto_pause_after_seconds: autoPause } : {}),
        last_activity_at: now(),
      };
    });
  });
}

export interface HistoryEntry {
  seq: number;
  command: string | null;
  argv: string[] | null;
  cwd: string | null;
  started_at: string;
  exit_code: number;
  timed_out: boolean;
  duration_ms: number;
}

export function readHistory(home: string, id: string): HistoryEntry[] {
  const p = historyPath(home, id);
  if (!existsSync(p)) return [];
  return readFileSync(p, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as HistoryEntry);
}

export async function workspaceLogs(ctx: Ctx, ref: string, opts: { tail_lines?: number } = {}) {
  const r = await resolveWorkspace(ctx.home, ref);
  const history = readHistory(ctx.home, r.workspace_id);
  const consoleText = existsSync(consoleLogPath(ctx.home, r.workspace_id))
    ? readFileSync(consoleLogPath(ctx.home, r.workspace_id), "utf8")
    : "";
  const tail = opts.tail_lines ?? 200;
  // the history is redacted when written (supervisor/history.ts); the console log is the VMM's
  const redactor = workspaceRedactor(ctx.home, r.workspace_id);
  const consoleTail = consoleText.split("\n").slice(-tail).join("\n");
  return {
    workspace_id: r.workspace_id,
    entries: history,
    count: history.length,
    console_tail: redactor ? redactor.text(consoleTail) : consoleTail,
    network_refusals: networkRefusals(ctx.home, r),
  };
}

export async function execWorkspace(
  ctx: Ctx,
  ref: string,
  input: ExecInput,
): Promise<ExecResult & { workspace_id: string }> {
  const r = await resolveWorkspace(ctx.home, ref);
  const { conn, release } = await acquireSupervisor(ctx.home, r);
  try {
    // an image environment's Env and WorkingDir (env/image/defaults.ts); none in host compat
    const manifest = r.backend === "host" ? null : findInstalled(ctx.home, r.environment)?.manifest;
    const stdout = ctx.live?.stdout;
    const live = {
      ...ctx.live,
      stdout: (b: Uint8Array) => {
        fault("exec.output", vmmOf(ctx.home, r.workspace_id));
        stdout?.(b);
      },
    };
    const res = await execOn(
      conn,
      withImageDefaults(manifest, input),
      { backend: r.backend, accelerator: r.accelerator },
      live,
    );
    return { workspace_id: r.workspace_id, ...res };
  } finally {
    release();
  }
}

async function waitStopped(ctx: Ctx, id: string, timeoutMs: number): Promise<WorkspaceRecord | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = readRecord(ctx.home, id);
    if (!r) return null;
    const cur = await repairRecord(ctx.home, r);
    if (cur?.state !== "started") return cur;
    if (Date.now() > deadline) return cur;
    await Bun.sleep(30);
  }
}

/** Ask the supervisor to stop the machine; if it does not within 30 s, kill it. Returns the record after. */
async function stopMachine(ctx: Ctx, r: WorkspaceRecord): Promise<WorkspaceRecord | null> {
  try {
    await callWorkspace(ctx.home, r, { op: "sup.stop" });
    // the VMM the stop was asked of (the supervisor may clear it from the record at once)
    fault("stop.requested", () => r.vmm_pid);
  } catch {}
  mark("stop.requested");
  const cur = await waitStopped(ctx, r.workspace_id, 30000);
  mark("stop.stopped");
  if (cur?.state === "started" && cur.supervisor_pid) {
    try {
      process.kill(cur.supervisor_pid, "SIGKILL");
    } catch {}
    return repairRecord(ctx.home, cur);
  }
  return cur;
}

export async function stopWorkspace(ctx: Ctx, ref: string): Promise<WorkspaceRecord> {
  const id = findRecord(ctx.home, ref).workspace_id;
  return withLifecycle(ctx.home, ctx.env, id, () => stopWorkspaceLocked(ctx, id));
}

/** `stop` for a caller that holds the lifecycle lock (reset). */
export async function stopWorkspaceLocked(ctx: Ctx, id: string): Promise<WorkspaceRecord> {
  const r = await resolveWorkspace(ctx.home, id);
  if (r.state === "paused") {
    // Nothing runs: stopping drops the saved machine state (the disk was synced at pause).
    discardPausedState(ctx.home, id, "the workspace was stopped while paused");
    return updateRecord(ctx.home, id, (x) => ({
      ...x,
      state: "stopped",
      stop_reason: "stopped while paused (the saved machine state was discarded)",
      last_activity_at: now(),
    }));
  }
  if (r.state !== "started") return r; // stopping a stopped workspace is a no-op
  const cur = await stopMachine(ctx, r);
  if (cur?.stop_reason?.startsWith("supervisor died")) return cur;
  return updateRecord(ctx.home, r.workspace_id, (x) => ({
    ...x,
    stop_reason: "stopped by request",
    last_activity_at: now(),
  }));
}

export async function startWorkspace(ctx: Ctx, ref: string): Promise<WorkspaceRecord> {
  const id = findRecord(ctx.home, ref).workspace_id;
  return withLifecycle(ctx.home, ctx.env, id, () => startWorkspaceLocked(ctx, id));
}

/**
 * `start` for a caller that holds the lifecycle lock (reset, resume). A paused workspace is
 * started only with `resume` (its saved state restored); a plain start refuses it.
 */
export async function startWorkspaceLocked(
  ctx: Ctx,
  id: string,
  opts: { resume?: boolean; launch?: SupervisorLaunch } = {},
): Promise<WorkspaceRecord> {
  const r = await resolveWorkspace(ctx.home, id);
  if (r.state === "started") return r;
  if (r.state === "paused" && !opts.resume) {
    const ref = r.name ?? r.workspace_id;
    throw new PyroError("WORKSPACE_NOT_STOPPED", `workspace ${ref} is paused`, {
      hint: `\`pyro workspace resume ${ref}\` continues it; \`pyro workspace stop ${ref}\` discards its memory first`,
    });
  }
  await withLock(registryLock(ctx.home), async () => {
    const limit = maxActive(ctx.env);
    if ((await activeCount(ctx.home)) >= limit) {
      throw new PyroError("WORKSPACE_LIMIT_REACHED", `at most ${limit} workspaces may run at once`);
    }
    await updateRecord(ctx.home, r.workspace_id, (x) => ({
      ...x,
      state: "created",
      in_progress: inProgress("start"),
    }));
  });
  fault("start.record");
  try {
    if (!opts.resume) await ensureTemplateFor(ctx, r);
    await (opts.launch ?? spawnSupervisor(ctx, r.workspace_id, { resume: opts.resume })).ready();
  } catch (err) {
    clearRunMarks(ctx.home, r.workspace_id);
    await updateRecord(ctx.home, r.workspace_id, (x) => ({
      ...x,
      state: "stopped",
      in_progress: null,
      stop_reason: `the start failed: ${(err as Error).message}`,
    }));
    throw err;
  }
  fault("start.done", vmmOf(ctx.home, r.workspace_id));
  return updateRecord(ctx.home, r.workspace_id, (x) => ({ ...x, in_progress: null }));
}

export async function deleteWorkspace(
  ctx: Ctx,
  ref: string,
): Promise<{ workspace_id: string; deleted: true }> {
  const named = lookupWorkspace(ctx.home, ref);
  const id = named.ok ? named.record.workspace_id : named.corrupt.workspace_id;
  return withLifecycle(ctx.home, ctx.env, id, async () => {
    const found = lookupWorkspace(ctx.home, id);
    if (!found.ok) {
      // A corrupt record still goes: its machine is found by its pids, then its files are removed.
      await stopCorrupt(ctx.home, found.corrupt);
      removeWorkspaceFiles(ctx.home, id);
      return { workspace_id: id, deleted: true as const };
    }
    const r = await repairRecord(ctx.home, found.record);
    if (r?.state === "started") await stopMachine(ctx, r);
    fault("delete.stopped", vmmOf(ctx.home, id));
    removeWorkspaceFiles(ctx.home, id);
    return { workspace_id: id, deleted: true as const };
  });
}
