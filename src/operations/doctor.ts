/**
 * `pyro doctor`: every host check with a fix hint for each failure. Warnings (ok: true,
 * warning: true) name things to act on that do not make the host unusable.
 */
import { accessSync, constants, mkdirSync, statfsSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { CATALOG } from "../env/catalog.ts";
import { canBuildLocally } from "../env/prepare.ts";
import { findInstalled, verifyEnvironment } from "../env/store.ts";
import type { Ctx } from "../manager/context.ts";
import { scanRecords } from "../manager/record.ts";
import { DEFAULT_ENVIRONMENT, DEFAULT_MEM_MIB, DEFAULT_VCPU } from "../manager/workspaces.ts";
import { ERROR_EXIT_CODES, type ErrorCode } from "../protocol/errors.ts";
import { agentCommand } from "../vmm/agent-path.ts";
import { tapUnavailableReason } from "../vmm/net/host.ts";
import { kvmUsable } from "../vmm/select.ts";
import * as out from "./outputs.ts";
import { renderTable } from "./render.ts";
import { defineOperation } from "./types.ts";

interface Check {
  name: string;
  ok: boolean;
  /** something to act on that does not make the host unusable (ok stays true) */
  warning?: boolean;
  detail: string;
  hint: string | null;
}

/** Corrupt workspace records: a warning naming each id (other workspaces are unaffected). */
function recordsCheck(home: string): Check {
  const { records, corrupt } = scanRecords(home);
  if (corrupt.length === 0) {
    return {
      name: "workspace_records",
      ok: true,
      detail: `${records.length} readable, none corrupt`,
      hint: null,
    };
  }
  return {
    name: "workspace_records",
    ok: true,
    warning: true,
    detail: `${corrupt.length} corrupt: ${corrupt.map((c) => `${c.workspace_id} (${c.reason})`).join("; ")}`,
    hint: corrupt.map((c) => `pyro workspace delete ${c.workspace_id}`).join("; "),
  };
}

/** `-accel help` lists tcg: QEMU can run guests without KVM (slower). */
async function qemuHasTcg(bin: string): Promise<boolean> {
  const proc = Bun.spawn([bin, "-accel", "help"], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
  const text = await new Response(proc.stdout).text();
  await proc.exited;
  return /^tcg$/m.test(text);
}

/** Why /dev/kvm cannot be opened read-write by this user, or null when it can. */
function kvmDeviceProblem(): string | null {
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    return null;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT"
      ? "/dev/kvm is missing"
      : "/dev/kvm exists but this user cannot open it";
  }
}

/** Detail of an environment check that failed because it is not installed (see failureCode). */
const NOT_INSTALLED = "not installed";

async function runChecks(ctx: Ctx, only?: string): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, detail: string, hint: string | null = null) =>
    checks.push({ name, ok, detail, hint: ok ? null : hint });
  const warn = (name: string, detail: string, hint: string | null) =>
    checks.push({ name, ok: true, warning: true, detail, hint });

  const { findQemu, qemuVersion } = await import("../vmm/qemu/binary.ts");
  const qemu = findQemu(ctx.env);
  const tcg = qemu !== null && (await qemuHasTcg(qemu));
  // Without KVM, QEMU's TCG still runs every guest (slower): only both missing is a failure.
  const kvmProblem = kvmDeviceProblem();
  const kvmHint = "enable virtualization, load the kvm modules and join the kvm group";
  if (kvmProblem === null) add("kvm_device", true, "/dev/kvm can be opened");
  else if (tcg) warn("kvm_device", `${kvmProblem} — guests run under QEMU TCG (slower)`, kvmHint);
  else add("kvm_device", false, `${kvmProblem}, and no QEMU with TCG to run without it`, kvmHint);
  add(
    "qemu",
    qemu !== null,
    qemu
      ? `${qemu} (${(await qemuVersion(qemu)) ?? "unknown version"}; TCG ${tcg ? "available" : "missing"})`
      : "qemu-system-x86_64 not found",
    "apt-get install qemu-system-x86",
  );
  const { findFirecracker } = await import("../vmm/firecracker/binary.ts");
  const fc = findFirecracker(ctx.env);
  add("firecracker", true, fc ? fc : "not found (optional: QEMU is used instead)");

  const names = only ? [only] : CATALOG.map((r) => r.name);
  let kernel: string | null = null;
  const verified: string[] = [];
  for (const n of names) {
    const inst = findInstalled(ctx.home, n);
    if (!inst) {
      if (n !== DEFAULT_ENVIRONMENT && !only) add(`env ${n}`, true, `${NOT_INSTALLED} (optional)`);
      else if (ctx.env.PYRO_REGISTRY || canBuildLocally(ctx.env))
        warn(`env ${n}`, `${NOT_INSTALLED}; its first use installs it`, `pyro prepare ${n}`);
      else
        add(
          `env ${n}`,
          false,
          `${NOT_INSTALLED}, and this host can neither build it nor pull it`,
          `build it with \`sudo pyro env build ${n}\`, or set PYRO_REGISTRY and run \`pyro env pull ${n}\``,
        );
      continue;
    }
    try {
      await verifyEnvironment(inst);
      kernel ??= join(inst.dir, inst.manifest.kernel.file);
      add(`env ${n}`, true, `installed ${inst.manifest.version}, digests verified`);
      verified.push(n);
    } catch (err) {
      add(`env ${n}`, false, (err as Error).message, `pyro env build ${n} --force`);
    }
  }
  if (kernel && qemu) {
    const kvm = await kvmUsable(ctx.home, kernel, ctx.env);
    if (kvm.usable) add("kvm_usable", true, "yes (probe boot succeeded)");
    else warn("kvm_usable", `no: ${kvm.reason} — guests run under QEMU TCG (slower)`, null);
  } else {
    add("kvm_usable", true, "not probed (needs an installed environment and qemu)");
  }
  if (kernel && qemu) {
    // VM templates (src/manager/templates.ts) for the default machine shape, per environment
    const accelerator = (await kvmUsable(ctx.home, kernel, ctx.env)).usable ? "kvm" : "tcg";
    const { templateReport } = await import("../manager/templates.ts");
    const report = await templateReport(
      ctx.home,
      ctx.env,
      { accelerator, vcpu_count: DEFAULT_VCPU, mem_mib: DEFAULT_MEM_MIB, network: "off" },
      verified,
    );
    for (const t of report) {
      const name = `template ${t.environment}`;
      if (t.status === "ready") add(name, true, "ready: workspaces start from it (no cold boot)");
      else if (t.status === "off") add(name, true, "off (PYRO_TEMPLATES=off): every workspace boots cold");
      else
        warn(
          name,
          `${t.status}: ${t.reason} — workspaces boot cold until it is made`,
          `\`pyro prepare ${t.environment}\` makes it (else the next create does)`,
        );
    }
  }
  mkdirSync(ctx.home, { recursive: true });
  const s = statfsSync(ctx.home);
  const freeGib = (s.bavail * s.bsize) / 2 ** 30;
  add(
    "disk_space",
    freeGib >= 2,
    `${freeGib.toFixed(1)} GiB free in ${ctx.home}`,
    "free some disk space (each environment needs ~1 GiB)",
  );
  add(
    "network",
    qemu !== null,
    qemu ? "QEMU user-mode networking (no root, no tap needed)" : "no qemu",
    "apt-get install qemu-system-x86",
  );
  // Egress allow-lists (and Firecracker networking) need a tap device + nftables (src/vmm/net).
  const tapProblem = tapUnavailableReason();
  const fcNote = fc
    ? "; networked workspaces run on QEMU (Firecracker networking is not yet proven on a host)"
    : "";
  if (tapProblem === null)
    add("tap_network", true, `tap devices + nftables available (egress allow-lists)${fcNote}`);
  else
    warn(
      "tap_network",
      `unavailable: ${tapProblem} — egress allow-lists (--allow-host, --allow-cidr) are refused with NETWORK_UNSUPPORTED${fcNote}`,
      "run pyro as root with iproute2 and nftables installed (apt-get install nftables)",
    );
  let agentOk = true;
  try {
    agentCommand(ctx.env);
  } catch {
    agentOk = false;
  }
  add(
    "host_compat_agent",
    agentOk,
    agentOk ? "pyro-agent found" : "pyro-agent not found",
    "reinstall pyro (its agent is embedded and extracted into the cache), or set PYRO_AGENT_PATH",
  );
  checks.push(recordsCheck(ctx.home));
  return checks;
}

/** The error a failing check stands for (its exit code is doctor's; the first failure decides). */
function failureCode(c: Check): ErrorCode {
  if (c.name.startsWith("env ")) {
    return c.detail.startsWith(NOT_INSTALLED) ? "ENVIRONMENT_NOT_FOUND" : "ENVIRONMENT_CORRUPT";
  }
  switch (c.name) {
    case "disk_space":
      return "IO_ERROR";
    case "host_compat_agent":
      return "VMM_NOT_FOUND";
    default: // kvm_device, qemu, network: nothing can boot a guest
      return "BACKEND_UNAVAILABLE";
  }
}

/** 0 when every check passed (warnings included), else the first failure's code from the table. */
function doctorExitCode(checks: Check[]): number {
  const failed = checks.find((c) => !c.ok);
  return failed ? ERROR_EXIT_CODES[failureCode(failed)] : 0;
}

export const doctorOp = defineOperation({
  name: "doctor",
  sdk: "doctor",
  output: out.doctorResult,
  mutates: false,
  cli: ["doctor"],
  summary: "Check this host: KVM, VMMs, environments, disk, networking.",
  description: "Run the host checks pyro depends on and say how to fix each failure.",
  input: v.strictObject({
    environment: v.optional(v.pipe(v.string(), v.description("Only check this environment."))),
  }),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: [],
  notOverMcp:
    "it reports host facts and host paths (PYRO_HOME, binaries, disk space) a model does not need; the user runs it.",
  run: async (ctx, input) => {
    const checks = await runChecks(ctx, input.environment);
    return { ok: checks.every((c) => c.ok), checks, pyro_home: ctx.home };
  },
  render: (out) => {
    const checks = out.checks as Check[];
    const table = renderTable([
      ["CHECK", "OK", "DETAIL"],
      ...checks.map((c) => [
        c.name,
        c.ok ? (c.warning ? "warn" : "ok") : "FAIL",
        c.detail + (c.hint ? `  → ${c.hint}` : ""),
      ]),
    ]);
    const warnings = checks.filter((c) => c.warning).length;
    const passed = warnings
      ? `all checks passed (${warnings} warning${warnings > 1 ? "s" : ""})`
      : "all checks passed";
    return `${table}\n${out.ok ? passed : "some checks failed"}`;
  },
  exitCode: (out) => doctorExitCode(out.checks as Check[]),
});
