/**
 * `pyro doctor`: every host check with a fix hint for each failure. Warnings (ok: true,
 * warning: true) name things to act on that do not make the host unusable.
 */
import { existsSync, mkdirSync, statfsSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { CATALOG } from "../env/catalog.ts";
import { findInstalled, verifyEnvironment } from "../env/store.ts";
import type { Ctx } from "../manager/context.ts";
import { scanRecords } from "../manager/record.ts";
import { agentCommand } from "../vmm/agent-path.ts";
import { kvmUsable } from "../vmm/select.ts";
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

async function runChecks(ctx: Ctx, only?: string): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, detail: string, hint: string | null = null) =>
    checks.push({ name, ok, detail, hint: ok ? null : hint });

  add(
    "kvm_device",
    existsSync("/dev/kvm"),
    existsSync("/dev/kvm") ? "/dev/kvm exists" : "/dev/kvm is missing",
    "enable virtualization / load kvm modules; QEMU TCG still works without it",
  );
  const { findQemu, qemuVersion } = await import("../vmm/qemu/binary.ts");
  const qemu = findQemu(ctx.env);
  add(
    "qemu",
    qemu !== null,
    qemu ? `${qemu} (${(await qemuVersion(qemu)) ?? "unknown version"})` : "qemu-system-x86_64 not found",
    "apt-get install qemu-system-x86",
  );
  const { findFirecracker } = await import("../vmm/firecracker/binary.ts");
  const fc = findFirecracker(ctx.env);
  checks.push({
    name: "firecracker",
    ok: true,
    detail: fc ? fc : "not found (optional: QEMU is used instead)",
    hint: null,
  });

  const names = only ? [only] : CATALOG.map((r) => r.name);
  let kernel: string | null = null;
  for (const n of names) {
    const inst = findInstalled(ctx.home, n);
    if (!inst) {
      add(`env ${n}`, n !== "debian:12", "not installed", `pyro env build ${n}`);
      continue;
    }
    try {
      await verifyEnvironment(inst);
      kernel ??= join(inst.dir, inst.manifest.kernel.file);
      add(`env ${n}`, true, `installed ${inst.manifest.version}, digests verified`);
    } catch (err) {
      add(`env ${n}`, false, (err as Error).message, `pyro env build ${n} --force`);
    }
  }
  if (kernel && qemu) {
    const kvm = await kvmUsable(ctx.home, kernel, ctx.env);
    checks.push({
      name: "kvm_usable",
      ok: true,
      detail: kvm.usable
        ? "yes (probe boot succeeded)"
        : `no: ${kvm.reason} — guests run under QEMU TCG (slower)`,
      hint: null,
    });
  } else {
    checks.push({
      name: "kvm_usable",
      ok: true,
      detail: "not probed (needs an installed environment and qemu)",
      hint: null,
    });
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
    "reinstall pyro (pyro-agent must sit next to pyro)",
  );
  checks.push(recordsCheck(ctx.home));
  return checks;
}

export const doctorOp = defineOperation({
  name: "doctor",
  sdk: "doctor",
  cli: ["doctor"],
  summary: "Check this host: KVM, VMMs, environments, disk, networking.",
  description: "Run the host checks pyro depends on and say how to fix each failure.",
  input: v.strictObject({
    environment: v.optional(v.pipe(v.string(), v.description("Only check this environment."))),
  }),
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: [],
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
    return `${table}\n${out.ok ? "all checks passed" : "some checks failed"}`;
  },
  exitCode: (out) => (out.ok ? 0 : 69),
});
