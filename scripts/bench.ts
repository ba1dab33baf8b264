/**
 * `bun run bench [-- --quick] [-- --only NAME]`: measure pyro on this machine and rewrite
 * docs/benchmarks.md. Uses its own temporary PYRO_HOME (never the real one), builds what it
 * needs (dist/ and the debian:12 environment, from the build cache), runs each measurement
 * several times and reports median, p90 and min–max with N, next to each target.
 *
 * Sections: cli, exec-host, boot, guest-exec, footprint, diff, transfer, snapshots, detached, pause, image-import, services, templates (see
 * scripts/bench/*.ts).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { bootAccelReason } from "./bench/accel.ts";
import { boot } from "./bench/boot.ts";
import { cliStart } from "./bench/cli-start.ts";
import { detachedSection } from "./bench/detached.ts";
import { diffSection } from "./bench/diff.ts";
import { execHost } from "./bench/exec-host.ts";
import { footprint } from "./bench/footprint.ts";
import { forwardSection } from "./bench/forward.ts";
import { guestExec } from "./bench/guest-exec.ts";
import { imageImport } from "./bench/image-import.ts";
import { type BenchCtx, loadAvg, ms, PYRO, ROOT, type Section, sh } from "./bench/lib.ts";
import { sectionBlock, writeReport } from "./bench/report.ts";
import { servicesSection } from "./bench/services.ts";
import { shellSection } from "./bench/shell.ts";
import { snapshots } from "./bench/snapshots.ts";
import { templatesSection } from "./bench/templates.ts";
import { pauseSection } from "./bench/templates-pause.ts";
import { transfer } from "./bench/transfer.ts";

const SECTIONS: Section[] = [
  cliStart,
  execHost,
  boot,
  guestExec,
  footprint,
  diffSection,
  transfer,
  snapshots,
  detachedSection,
  pauseSection,
  forwardSection,
  shellSection,
  imageImport,
  servicesSection,
  templatesSection,
];
const NEEDS_GUEST = new Set([
  "boot",
  "guest-exec",
  "footprint",
  "diff",
  "transfer",
  "snapshots",
  "detached",
  "pause",
  "forward",
  "shell",
  "services",
  "templates",
]);
const REPORT = join(ROOT, "docs", "benchmarks.md");

function parseArgs(argv: string[]) {
  const out = { quick: false, only: null as string | null, write: true, keepHome: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--quick") out.quick = true;
    else if (a === "--only") out.only = argv[++i] ?? null;
    else if (a.startsWith("--only=")) out.only = a.slice(7);
    else if (a === "--no-write") out.write = false;
    else if (a === "--keep-home") out.keepHome = true;
    else if (a === "--") continue;
    else if (a === "-h" || a === "--help") {
      console.log(
        `usage: bun run bench [-- --quick] [--only ${SECTIONS.map((s) => s.id).join("|")}] [--no-write] [--keep-home]`,
      );
      process.exit(0);
    } else {
      console.error(`bench: unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (out.only && !SECTIONS.some((s) => s.id === out.only)) {
    console.error(`bench: --only takes one of ${SECTIONS.map((s) => s.id).join(", ")}`);
    process.exit(2);
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const started = performance.now();
const log = (line: string) =>
  console.error(`[bench ${((performance.now() - started) / 1000).toFixed(0)}s] ${line}`);

// Short path: QEMU's UNIX sockets live under it (sun_path is 108 bytes).
const home = mkdtempSync(join(os.tmpdir(), "pyro-bench-"));
const env: Record<string, string | undefined> = { ...process.env, PYRO_HOME: home };
// Same default as scripts/setup.sh, scripts/test.ts and test/preload.ts (a different one rebuilds the kernel).
env.PYRO_BUILD_CACHE ??= process.getuid?.() === 0 ? "/var/cache/pyro/build" : join(ROOT, ".cache", "build");
delete env.PYRO_BACKEND; // sections choose it where they must
delete env.PYRO_REGISTRY;

const ctx: BenchCtx = {
  home,
  env,
  quick: args.quick,
  n: (full, quick) => (args.quick ? quick : full),
  log,
};

/** Stop every workspace the bench left behind (its own supervisors only), remove the home. */
function cleanup(): void {
  const dir = join(home, "workspaces");
  if (existsSync(dir)) {
    for (const id of readdirSync(dir)) {
      try {
        const r = JSON.parse(readFileSync(join(dir, id, "workspace.json"), "utf8"));
        for (const pid of [r.supervisor_pid, r.vmm_pid]) {
          if (!pid) continue;
          const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
          if (cmd.includes(id)) process.kill(pid, "SIGKILL");
        }
      } catch {}
    }
  }
  if (args.keepHome) log(`kept ${home}`);
  else rmSync(home, { recursive: true, force: true });
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? "?";
  } catch {
    return "?";
  }
}

async function gitCommit(): Promise<string> {
  const r = await sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], { allowFail: true });
  const dirty = await sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], {
    allowFail: true,
  });
  return r.code === 0 ? `${r.stdout.trim()}${dirty.stdout.trim() ? " + uncommitted changes" : ""}` : "?";
}

const chosen = SECTIONS.filter((s) => !args.only || s.id === args.only);
const setup: string[] = [];
const fresh = new Map<string, string>();
const summary: string[] = [];
const loadStart = loadAvg();
let accel = "not measured (no guest section ran)";
try {
  log(
    `PYRO_HOME=${home} (temporary); mode ${args.quick ? "quick" : "full"}; sections ${chosen.map((s) => s.id).join(", ")}`,
  );
  const build = await sh([process.execPath, join(ROOT, "scripts", "build.ts")], { env });
  log(`build: ${build.stderr.trim().split("\n").join("; ")}`);
  if (chosen.some((s) => NEEDS_GUEST.has(s.id))) {
    const eb = await sh([PYRO, "env", "build", "debian:12", "--json"], { env });
    setup.push(
      `\`pyro env build debian:12\` into the fresh home (kernel + package tree from the build cache): ${ms(eb.ms)}`,
    );
    log(`env build: ${ms(eb.ms)}`);
    // First guest use in a fresh home pays the one-time KVM probe (cached per host boot).
    const first = await sh([PYRO, "run", "debian:12", "--", "true"], { env });
    const why = bootAccelReason(home);
    accel = why.text;
    setup.push(
      `first \`pyro run debian:12 -- true\` in the fresh home (includes the one-time KVM probe${why.probeMs !== null ? ` of ${ms(why.probeMs)}` : ""}): ${ms(first.ms)}`,
    );
    log(`first run: ${ms(first.ms)}; ${accel}`);
  }
  for (const s of chosen) {
    log(`section ${s.id}: start (load ${loadAvg()})`);
    const t = performance.now();
    let body: string;
    let lines: string[];
    try {
      const r = await s.run(ctx);
      body = r.body;
      lines = r.summary;
    } catch (err) {
      body = `**This section failed:**\n\n\`\`\`\n${String((err as Error)?.stack ?? err).slice(0, 3000)}\n\`\`\``;
      lines = [`${s.title}: FAILED (${String((err as Error)?.message ?? err).split("\n")[0]})`];
    }
    const took = performance.now() - t;
    const stamp = `measured ${new Date().toISOString()}, ${args.quick ? "--quick" : "full"} run, ${(took / 1000).toFixed(0)} s, load average at start ${loadAvg()}`;
    fresh.set(s.id, sectionBlock(s.id, s.title, stamp, body, lines));
    summary.push(...lines);
    log(`section ${s.id}: done in ${(took / 1000).toFixed(0)} s`);
    for (const l of lines) log(`  ${l}`);
  }
} finally {
  cleanup();
}

const qemu = await sh(["qemu-system-x86_64", "--version"], { allowFail: true });
const header = [
  "# Benchmarks",
  "",
  "Measured figures, written by `bun run bench` (scripts/bench.ts); tests never assert timings. Medians with p90 and min–max over N runs; each table names its target and whether it is met.",
  "",
  "| | |",
  "|---|---|",
  `| Date | ${new Date().toISOString()} |`,
  `| Machine | ${os.availableParallelism()} CPUs (nproc), ${cpuModel()}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${os.release()} |`,
  `| Bun | ${Bun.version} |`,
  `| QEMU | ${qemu.stdout.split("\n")[0]?.trim() || "not found"} |`,
  `| Accelerator | ${accel} |`,
  `| pyro | ${await gitCommit()} |`,
  `| Run | ${args.quick ? "`--quick`" : "full"}${args.only ? `, \`--only ${args.only}\` (other sections kept from an earlier run)` : ""}; total ${((performance.now() - started) / 1000).toFixed(0)} s; load average ${loadStart} at start, ${loadAvg()} at end |`,
  ...setup.map((s, i) => `| ${i === 0 ? "Setup" : ""} | ${s} |`),
  "",
  "The machine is shared: other builds and test runs may load it while the bench runs (see the load averages); variants that are compared are interleaved run by run so such load hits both sides alike.",
  "",
  "Reproduce: `bun run bench` (≈ 14 min on 2 cores), `bun run bench -- --quick` (fewer iterations), `bun run bench -- --only " +
    SECTIONS.map((s) => s.id).join("|") +
    "` (one section; the others are kept). The bench uses its own temporary PYRO_HOME, builds `dist/` and installs debian:12 from the build cache (`PYRO_BUILD_CACHE`, default `.cache/build`; a cold cache builds the kernel and rootfs first, ~10 min).",
].join("\n");

if (args.write) {
  writeReport(REPORT, header, SECTIONS, fresh);
  log(`wrote ${REPORT}`);
} else {
  console.log([header, ...fresh.values()].join("\n\n"));
}
console.log(summary.map((s) => `- ${s}`).join("\n"));
log(`total ${((performance.now() - started) / 1000).toFixed(0)} s`);
process.exit(0);
