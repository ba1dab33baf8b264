/**
 * §3 Real guest boot: a bare QEMU boot (pyro's own argv, no orchestration) against pyro's
 * orchestrated boots, all to the same ready point: the agent answering `hello`.
 *
 * Variants are interleaved per iteration so background load hits them alike:
 *   bare       qemu-system-x86_64 spawned directly with buildQemuArgv's line (no data disk,
 *              like one-shot run: the guest overlays a tmpfs), connect at 1–2 ms polling,
 *              hello → exec true → shutdown → QEMU exit
 *   machine    startMachine(backend, spec) from src/manager/machine.ts (what run and the
 *              supervisor call), then exec true and machine.shutdown()
 *   steps      runOnce replayed step by step with the same functions, each phase timed
 *   cli run    `dist/pyro run debian:12 -- true`, spawn → exit
 *   bare+disk  bare, with a fresh blank data disk (like a workspace)
 *   ws create  `dist/pyro workspace create debian:12 --id-only`, spawn → exit (then delete)
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createDataDisk } from "../../src/env/build/datadisk.ts";
import { ensureEnvironment } from "../../src/env/prepare.ts";
import { artifactsOf, findInstalled } from "../../src/env/store.ts";
import { makeCtx } from "../../src/manager/context.ts";
import { execOn } from "../../src/manager/exec.ts";
import { helloAgent } from "../../src/manager/handshake.ts";
import { startMachine } from "../../src/manager/machine.ts";
import { hostTscKhz } from "../../src/vmm/probe/tsc.ts";
import { buildQemuArgv } from "../../src/vmm/qemu/argv.ts";
import { findQemu } from "../../src/vmm/qemu/binary.ts";
import { chooseBackend, loadBackend } from "../../src/vmm/select.ts";
import { connectUnixChannel } from "../../src/vmm/socket-channel.ts";
import type { BootSpec, EnvironmentArtifacts } from "../../src/vmm/types.ts";
import { createWorkspaceCli, deleteWorkspaceCli } from "./exec-host.ts";
import {
  type BenchCtx,
  cell,
  met,
  ms,
  PhaseSamples,
  Phases,
  PYRO,
  pct,
  type Section,
  type SectionResult,
  type Stats,
  sh,
  stats,
  table,
} from "./lib.ts";

const TARGET_OVERHEAD = 0.15;
const MEM_MIB = 1024; // run's and create's default
const VCPUS = 1;
const BOOT_TIMEOUT_MS = 120_000;

interface Shape {
  artifacts: EnvironmentArtifacts;
  accelerator: "kvm" | "tcg";
  qemuBin: string;
  backendName: string;
}

async function machineShape(ctx: BenchCtx): Promise<Shape> {
  const installed = findInstalled(ctx.home, "debian:12");
  if (!installed) throw new Error("debian:12 is not installed in the bench home");
  const choice = await chooseBackend({
    home: ctx.home,
    env: ctx.env,
    allowHostCompat: false,
    kernelPath: join(installed.dir, installed.manifest.kernel.file),
  });
  const qemuBin = findQemu(ctx.env);
  if (!qemuBin) throw new Error("qemu-system-x86_64 not found");
  return {
    artifacts: artifactsOf(installed),
    accelerator: choice.accelerator === "kvm" ? "kvm" : "tcg",
    qemuBin,
    backendName: choice.name,
  };
}

function specFor(shape: Shape, dir: string, id: string, dataDiskPath?: string): BootSpec {
  return {
    workspaceId: id,
    runDir: dir,
    workspaceDir: join(dir, "workspace"),
    dataDiskPath,
    environment: shape.artifacts,
    vcpuCount: VCPUS,
    memMib: MEM_MIB,
    network: false,
    consoleLogPath: join(dir, "console.log"),
    bootTimeoutMs: BOOT_TIMEOUT_MS,
  };
}

interface BareResult {
  /** spawn → agent socket accepted the connection */
  connect: number;
  /** spawn → hello answered (the ready point) */
  ready: number;
  exec: number;
  /** shutdown request → QEMU exit */
  shutdown: number;
  /** ready + exec + shutdown (the uptime probe excluded) */
  cycle: number;
  /** guest /proc/uptime read right after the timed part, and host ms since spawn at that read */
  guestUptimeMs: number;
  hostAtUptimeMs: number;
}

/** Boot pyro's QEMU line directly: no setpriv, no QMP wait, no environment checks. */
async function bareBoot(ctx: BenchCtx, shape: Shape, i: number, withDisk: boolean): Promise<BareResult> {
  const dir = mkdtempSync(join(ctx.home, "bare-"));
  let proc: Bun.Subprocess | undefined;
  try {
    let disk: string | undefined;
    if (withDisk) {
      disk = join(dir, "disk.ext4");
      await createDataDisk(disk, 8192);
    }
    const spec = specFor(shape, dir, `bench-bare-${i}`, disk);
    const agentSock = join(dir, "agent.sock");
    const argv = buildQemuArgv(spec, {
      accelerator: shape.accelerator,
      qemuBin: shape.qemuBin,
      agentSocketPath: agentSock,
      qmpSocketPath: join(dir, "qmp.sock"),
      hostTscKhz: shape.accelerator === "tcg" ? hostTscKhz() : undefined,
    });
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    const t0 = performance.now();
    proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: Bun.file(join(dir, "qemu.log")) });
    const channel = await connectUnixChannel(agentSock, deadline, { retryDelayMs: 1, maxRetryDelayMs: 2 });
    const tConnect = performance.now();
    const { conn } = await helloAgent(channel, deadline);
    const tReady = performance.now();
    const where = { backend: "qemu" as const, accelerator: shape.accelerator };
    const r = await execOn(conn, { command: ["true"] }, where);
    if (r.exit_code !== 0) throw new Error("bare boot: exec true failed");
    const tExec = performance.now();
    const up = await execOn(conn, { command: ["cat", "/proc/uptime"] }, where);
    const tUp = performance.now();
    const guestUptimeMs = Number(up.stdout.split(" ")[0]) * 1000;
    const tShut = performance.now();
    await conn.call({ op: "shutdown" });
    const exited = proc.exited;
    await Promise.race([exited, Bun.sleep(15000)]);
    const tExit = performance.now();
    conn.close();
    return {
      connect: tConnect - t0,
      ready: tReady - t0,
      exec: tExec - tReady,
      shutdown: tExit - tShut,
      cycle: tReady - t0 + (tExec - tReady) + (tExit - tShut),
      guestUptimeMs,
      hostAtUptimeMs: tUp - t0,
    };
  } finally {
    if (proc && proc.exitCode === null) proc.kill("SIGKILL");
    await proc?.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

interface MachineResult {
  ready: number;
  exec: number;
  shutdown: number;
  cycle: number;
}

/** pyro's boot as run and the supervisor do it: startMachine. */
async function machineBoot(ctx: BenchCtx, shape: Shape, i: number): Promise<MachineResult> {
  const dir = mkdtempSync(join(ctx.home, "mach-"));
  try {
    const backend = await loadBackend({ name: "qemu", accelerator: shape.accelerator });
    const t0 = performance.now();
    const m = await startMachine(backend, specFor(shape, dir, `bench-mach-${i}`));
    const tReady = performance.now();
    const r = await execOn(
      m.conn,
      { command: ["true"] },
      { backend: "qemu", accelerator: shape.accelerator },
    );
    if (r.exit_code !== 0) throw new Error("machine boot: exec true failed");
    const tExec = performance.now();
    await m.shutdown();
    const tDone = performance.now();
    return { ready: tReady - t0, exec: tExec - tReady, shutdown: tDone - tExec, cycle: tDone - t0 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * runOnce (src/manager/run.ts) replayed step by step with the same functions, so each phase
 * of pyro's one-shot path has its own figure. startMachine's body is inlined here.
 */
async function stepwiseRun(
  ctx: BenchCtx,
  shape: Shape,
): Promise<{ phases: { name: string; ms: number }[]; ready: number }> {
  const p = new Phases();
  const c = makeCtx(ctx.env);
  const t0 = performance.now();
  const installed = await p.phase("env lookup + verify (manifest, stamp)", () =>
    ensureEnvironment(c, "debian:12", { allowMissing: false }),
  );
  if (!installed) throw new Error("not installed");
  const choice = await p.phase("backend choice (which firecracker/qemu + KVM probe cache read)", () =>
    chooseBackend({
      home: c.home,
      env: c.env,
      allowHostCompat: false,
      kernelPath: join(installed.dir, installed.manifest.kernel.file),
    }),
  );
  const backend = await p.phase("load backend module", () => loadBackend(choice));
  const dir = join(c.home, "runs", `run_bench${Math.random().toString(16).slice(2, 10)}`);
  await p.phase("run dir", () => mkdirSync(dir, { recursive: true, mode: 0o700 }));
  const spec = specFor({ ...shape, artifacts: artifactsOf(installed) }, dir, dir.split("/").at(-1)!);
  const deadline = Date.now() + BOOT_TIMEOUT_MS;
  try {
    const handle = await p.phase("backend.boot: spawn setpriv+QEMU, wait for QMP `running`", () =>
      backend.boot(spec),
    );
    try {
      const channel = await p.phase("connect agent socket (retry 10→200 ms backoff)", () =>
        handle.connect(deadline),
      );
      const { conn } = await p.phase("hello answered (guest kernel + init + agent start)", () =>
        helloAgent(channel, deadline),
      );
      const ready = performance.now() - t0;
      await p.phase("exec `true`", () =>
        execOn(conn, { command: ["true"] }, { backend: handle.backend, accelerator: handle.accelerator }),
      );
      await p.phase("shutdown request acked", () => conn.call({ op: "shutdown" }));
      await p.phase("guest: 50 ms timer + sync + reset → QEMU exit", () =>
        Promise.race([handle.exited, Bun.sleep(10000)]),
      );
      conn.close();
      await p.phase("handle.stop (QEMU already gone)", () => handle.stop(10000));
      await p.phase("teardown: rm run dir", () => rmSync(dir, { recursive: true, force: true }));
      return { phases: p.phases, ready };
    } finally {
      handle.kill();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const ratioRow = (label: string, pyro: Stats, bare: Stats): (string | number)[] => {
  const over = pyro.median / bare.median - 1;
  return [
    label,
    `${ms(pyro.median)} vs ${ms(bare.median)}`,
    `${ms(pyro.median - bare.median)} (${pct(over)})`,
    `≤ ${pct(TARGET_OVERHEAD)}`,
    met(over <= TARGET_OVERHEAD),
  ];
};

export const boot: Section = {
  id: "boot",
  title: "3. Real guest boot",
  async run(ctx): Promise<SectionResult> {
    const n = ctx.n(5, 3);
    const shape = await machineShape(ctx);
    if (shape.backendName !== "qemu") {
      ctx.log(`boot: pyro picks ${shape.backendName}; the bare comparison below still uses QEMU`);
    }
    ctx.log(`boot: accelerator ${shape.accelerator}, ${n} iterations of 6 variants`);
    // Warm the page cache for kernel + rootfs and the code paths (not measured).
    await bareBoot(ctx, shape, 0, false);

    const bare: BareResult[] = [];
    const bareDisk: BareResult[] = [];
    const mach: MachineResult[] = [];
    const steps = new PhaseSamples();
    const stepReady: number[] = [];
    const cliRun: number[] = [];
    const create: number[] = [];
    const del: number[] = [];
    for (let i = 1; i <= n; i++) {
      ctx.log(`boot: iteration ${i}/${n}`);
      bare.push(await bareBoot(ctx, shape, i, false));
      mach.push(await machineBoot(ctx, shape, i));
      const s = await stepwiseRun(ctx, shape);
      steps.add(s.phases);
      stepReady.push(s.ready);
      const r = await sh([PYRO, "run", "debian:12", "--", "true"], { env: ctx.env });
      cliRun.push(r.ms);
      bareDisk.push(await bareBoot(ctx, shape, 100 + i, true));
      const t = performance.now();
      const id = await createWorkspaceCli(ctx, []);
      create.push(performance.now() - t);
      del.push(await deleteWorkspaceCli(ctx, id));
    }

    const S = (xs: number[]) => stats(xs);
    const bReady = S(bare.map((b) => b.ready));
    const bConnect = S(bare.map((b) => b.connect));
    const bExec = S(bare.map((b) => b.exec));
    const bShut = S(bare.map((b) => b.shutdown));
    const bCycle = S(bare.map((b) => b.cycle));
    const bPreGuest = S(bare.map((b) => b.hostAtUptimeMs - b.guestUptimeMs));
    const bdReady = S(bareDisk.map((b) => b.ready));
    const mReady = S(mach.map((m) => m.ready));
    const mExec = S(mach.map((m) => m.exec));
    const mShut = S(mach.map((m) => m.shutdown));
    const mCycle = S(mach.map((m) => m.cycle));
    const sReady = S(stepReady);
    const cRun = S(cliRun);
    const cCreate = S(create);
    const cDel = S(del);

    const headline = table(
      ["Measurement (spawn/start → ready = agent answered `hello`)", "N", "median (p90, min–max)"],
      [
        ["(a) bare QEMU, pyro's argv, no data disk: spawn → ready", bReady.n, cell(bReady)],
        ["    of which spawn → agent socket accepts", bConnect.n, cell(bConnect)],
        [
          "    host time before the guest clock starts (spawn → uptime 0, from /proc/uptime)",
          bPreGuest.n,
          cell(bPreGuest),
        ],
        ["(b) pyro `startMachine` (no data disk): call → ready", mReady.n, cell(mReady)],
        ["(b') pyro one-shot path step by step (env verify … hello): start → ready", sReady.n, cell(sReady)],
        ["(a+disk) bare QEMU with a fresh blank 8 GiB data disk: spawn → ready", bdReady.n, cell(bdReady)],
        [
          "(d) `dist/pyro workspace create debian:12` (data disk + supervisor): spawn → exit",
          cCreate.n,
          cell(cCreate),
        ],
        ["    `dist/pyro workspace delete ID` afterwards", cDel.n, cell(cDel)],
        ["(a) bare full cycle: ready + exec true + shutdown → QEMU exit", bCycle.n, cell(bCycle)],
        ["(b) `startMachine` full cycle: ready + exec true + `machine.shutdown()`", mCycle.n, cell(mCycle)],
        ["(c) `dist/pyro run debian:12 -- true`, cold process: spawn → exit", cRun.n, cell(cRun)],
        [
          "exec `true` after ready: bare / startMachine",
          bExec.n,
          `${ms(bExec.median)} / ${ms(mExec.median)}`,
        ],
        [
          "shutdown → QEMU exit: bare (shutdown op, wait exit) / `machine.shutdown()`",
          bShut.n,
          `${ms(bShut.median)} / ${ms(mShut.median)}`,
        ],
      ],
    );
    const targets = table(
      ["Comparison (medians)", "pyro vs bare", "pyro's overhead", "Target", "Met"],
      [
        ratioRow("(b) startMachine → ready vs (a) bare → ready", mReady, bReady),
        ratioRow("(b') one-shot path → ready vs (a) bare → ready", sReady, bReady),
        ratioRow("(c) `pyro run -- true` end to end vs (a) bare full cycle", cRun, bCycle),
        ratioRow("(d) `workspace create` vs (a+disk) bare → ready", cCreate, bdReady),
      ],
    );
    const breakdown = table(
      ["Phase of pyro's one-shot path (b')", "N", "median (p90, min–max)"],
      steps.entries().map(([name, s]) => [name, s.n, cell(s)]),
    );
    const preSpawn = steps
      .entries()
      .filter(([name]) => /^(env lookup|backend choice|load backend|run dir)/.test(name))
      .reduce((a, [, s]) => a + s.median, 0);
    const body = [
      `Accelerator: **${shape.accelerator}** (what pyro picked: backend ${shape.backendName}). Machine: ${VCPUS} vCPU, ${MEM_MIB} MiB, network off — run's and create's defaults. The bare boot uses the argv of \`buildQemuArgv\` for the same spec (minus the \`setpriv --pdeathsig\` prefix) and the same kernel and rootfs.`,
      "",
      headline,
      "",
      targets,
      "",
      "Where pyro's time goes (one-shot path, every step timed in-process with pyro's own functions):",
      "",
      breakdown,
      "",
      `Before QEMU is spawned pyro spends ${ms(preSpawn)} (median sum of env verify, backend choice, module load, run dir). QMP and the agent-socket connect run while the guest boots, so they cost nothing unless the guest is already up. The cold CLI adds its own process start and module loading: (c) − (b) full cycle = ${ms(cRun.median - mCycle.median)}.`,
    ].join("\n");
    const overB = mReady.median / bReady.median - 1;
    const overC = cRun.median / bCycle.median - 1;
    const overD = cCreate.median / bdReady.median - 1;
    return {
      body,
      summary: [
        `Boot (${shape.accelerator}): bare ${ms(bReady.median)}, startMachine ${ms(mReady.median)} (${pct(overB)}), run e2e ${ms(cRun.median)} vs bare cycle ${ms(bCycle.median)} (${pct(overC)}), create ${ms(cCreate.median)} vs bare+disk ${ms(bdReady.median)} (${pct(overD)}); target ≤ ${pct(TARGET_OVERHEAD)}`,
      ],
    };
  },
};
