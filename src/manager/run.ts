/**
 * One-shot `run`: boot a throwaway machine in this process, exec once, tear everything
 * down (even on Ctrl-C or failure) and return the exec result.
 *
 * `ttl_seconds` (default 600, 0 = no bound) bounds the machine's whole life, boot included,
 * from the moment it starts booting (preparing a missing environment is not counted): the
 * boot deadline is the earlier of the boot timeout and the ttl (a ttl that runs out during
 * boot is GUEST_BOOT_TIMEOUT naming the ttl), and the command's timeout is cut to what is
 * left of the ttl, so a ttl that runs out during the command gives the ordinary timed-out
 * result (`timed_out: true`, exit 124, partial output, process group killed). Either way the
 * machine is then torn down.
 */

import { closeSync, mkdirSync, openSync, rmSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { withImageDefaults } from "../env/image/defaults.ts";
import { ensureEnvironment } from "../env/prepare.ts";
import { PyroError } from "../protocol/errors.ts";
import { chooseBackend, loadBackend } from "../vmm/select.ts";
import type { BootSpec } from "../vmm/types.ts";
import { bootTimeoutMs } from "./boot.ts";
import type { Ctx } from "./context.ts";
import { DEFAULT_EXEC_TIMEOUT_SECONDS, type ExecResult, execOn } from "./exec.ts";
import { randomHex } from "./ids.ts";
import { startMachine } from "./machine.ts";
import {
  checkRunNetworkInput,
  recordRunOwner,
  refuseHostCompatAllowList,
  resolveAllowedHosts,
  setupRunNetwork,
  sweepDeadRuns,
} from "./network.ts";
import { runsDir } from "./paths.ts";
import { Teardown } from "./teardown.ts";
import { ensureTemplate, readyTemplate, TEMPLATE_DATA_DISK_MIB, templateMayBeAtFault } from "./templates.ts";
import { DEFAULT_TTL_SECONDS } from "./workspaces.ts";

export interface RunInput {
  environment: string;
  command: string | string[];
  vcpu_count?: number;
  mem_mib?: number;
  timeout_seconds?: number;
  /** bound on the machine's life, boot included (default 600; 0 = none) */
  ttl_seconds?: number;
  network?: boolean;
  /** egress allow-list (src/manager/network.ts); implies network */
  allow_hosts?: string[];
  allow_cidrs?: string[];
  allow_host_compat?: boolean;
  max_output_bytes?: number;
}

/** How a run's machine came up (its result's `boot` and `boot_note`). */
export interface RunBoot {
  boot: "template" | "cold" | null;
  boot_note: string | null;
}

/**
 * A one-shot machine from the environment's VM template (src/manager/templates.ts): the
 * template's device layout includes a data disk, so the run gets a sparse placeholder of the
 * same size at that position (never formatted: the guest is told it has no data disk and
 * keeps its changes in a tmpfs, as a cold run does). Not ok: boot cold, for this reason.
 */
async function runTemplate(
  ctx: Ctx,
  choice: { name: string; accelerator: "kvm" | "tcg" | null },
  spec: BootSpec,
  dir: string,
): Promise<{ ok: true } | { ok: false; reason: string | null }> {
  if (choice.name === "host" || !spec.environment) return { ok: false, reason: null };
  if (ctx.env.PYRO_TEMPLATES === "off") return { ok: false, reason: "PYRO_TEMPLATES=off" };
  if (!choice.accelerator) return { ok: false, reason: `no VM templates on the ${choice.name} backend` };
  const shape = {
    environment: spec.environment.name,
    accelerator: choice.accelerator,
    vcpu_count: spec.vcpuCount,
    mem_mib: spec.memMib,
    network: spec.network ? ("user" as const) : ("off" as const),
    // Firecracker's own templates (templates-firecracker.ts; a networked run boots cold there)
    ...(choice.name === "firecracker" ? { backend: "firecracker" as const } : {}),
  };
  try {
    await ensureTemplate(ctx, shape);
    const t = await readyTemplate(ctx.home, ctx.env, shape);
    if (!t.ok) return { ok: false, reason: t.reason };
    const disk = join(dir, "placeholder.img");
    closeSync(openSync(disk, "w", 0o600));
    truncateSync(disk, TEMPLATE_DATA_DISK_MIB * 1024 * 1024);
    spec.dataDiskPath = disk;
    spec.dataDiskPlaceholder = true;
    spec.memoryFile = { path: t.ram, shared: false };
    spec.restoreFrom = t.state;
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `no template (${(err as Error).message.slice(0, 300)})` };
  }
}

export async function runOnce(ctx: Ctx, input: RunInput): Promise<ExecResult & RunBoot> {
  const net = checkRunNetworkInput(input);
  // resolvable now, or the run fails before anything is made
  if (net.allow) await resolveAllowedHosts(net.allow.hosts, ctx.env);
  const installed = await ensureEnvironment(ctx, input.environment, {
    allowMissing: input.allow_host_compat ?? false,
  });
  const choice = await chooseBackend({
    home: ctx.home,
    env: ctx.env,
    allowHostCompat: input.allow_host_compat ?? false,
    kernelPath: installed ? join(installed.dir, installed.manifest.kernel.file) : null,
    network: net.network,
  });
  refuseHostCompatAllowList(choice.name, net.allow);
  const backend = await loadBackend(choice);
  const id = `run_${randomHex(6)}`;
  const dir = join(runsDir(ctx.home), id);
  const td = new Teardown();
  const onSignal = () => {
    void td.run().then(() => process.exit(130));
  };
  try {
    sweepDeadRuns(runsDir(ctx.home));
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    td.push("run dir", () => rmSync(dir, { recursive: true, force: true }));
    recordRunOwner(dir, false);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    const { artifactsOf } = await import("../env/store.ts");
    const spec: BootSpec = {
      workspaceId: id,
      runDir: dir,
      workspaceDir: join(dir, "workspace"),
      environment: choice.name === "host" || !installed ? null : artifactsOf(installed),
      vcpuCount: input.vcpu_count ?? 1,
      memMib: input.mem_mib ?? 1024,
      network: net.network,
      consoleLogPath: join(dir, "console.log"),
      bootTimeoutMs: bootTimeoutMs(ctx.env),
    };
    // restore the environment's VM template when there is one (QEMU or Firecracker; made on
    // first need, like a missing environment, before the ttl starts counting)
    if (net.allow) {
      // an allow-list: a tap and nftables table of the run's own, released after the machine
      const tap = await setupRunNetwork(ctx.home, id, dir, net.allow, choice.name, ctx.env);
      td.push("network", () => tap.release());
      spec.tap = tap.tap;
    }
    const template = spec.tap
      ? { ok: false as const, reason: "a tap network boots cold" }
      : await runTemplate(ctx, choice, spec, dir);
    let boot: RunBoot = template.ok
      ? { boot: "template", boot_note: null }
      : { boot: spec.environment ? "cold" : null, boot_note: template.reason };
    const ttlSeconds = input.ttl_seconds ?? DEFAULT_TTL_SECONDS;
    const expiresAt = ttlSeconds > 0 ? Date.now() + ttlSeconds * 1000 : Number.POSITIVE_INFINITY;
    const bootLimitMs = Math.min(bootTimeoutMs(ctx.env), expiresAt - Date.now());
    const ttlBoundsBoot = bootLimitMs < bootTimeoutMs(ctx.env);
    spec.bootTimeoutMs = bootLimitMs;
    const machine = await startMachine(backend, spec)
      .catch(async (err) => {
        if (!template.ok || !templateMayBeAtFault(err)) throw err;
        // the template did not restore: boot cold (the next workspace boot drops and remakes it)
        ctx.progress(`restoring the VM template failed (${(err as Error).message}); booting cold`);
        boot = {
          boot: "cold",
          boot_note: `restoring the template failed (${(err as Error).message.slice(0, 300)})`,
        };
        spec.memoryFile = undefined;
        spec.restoreFrom = undefined;
        spec.dataDiskPath = undefined;
        spec.dataDiskPlaceholder = undefined;
        return startMachine(backend, spec);
      })
      .catch((err) => {
        if (ttlBoundsBoot && err instanceof PyroError && err.code === "GUEST_BOOT_TIMEOUT") {
          throw new PyroError(
            "GUEST_BOOT_TIMEOUT",
            `the run's ttl_seconds (${ttlSeconds}) ran out while the machine was booting; it was destroyed`,
            {
              details: { ...err.details, ttl_seconds: ttlSeconds },
              hint: "raise --ttl-seconds (0 = no bound)",
            },
          );
        }
        throw err;
      });
    td.push("machine", () => machine.shutdown());
    const timeout = input.timeout_seconds ?? DEFAULT_EXEC_TIMEOUT_SECONDS;
    // at least 1 ms, so a ttl that ran out at the last moment still gives a timed-out result
    const ttlLeft = Math.max(expiresAt - Date.now(), 1) / 1000;
    const result = await execOn(
      machine.conn,
      // an image environment's Env and WorkingDir (env/image/defaults.ts); none in host compat
      withImageDefaults(machine.handle.backend === "host" ? null : installed?.manifest, {
        command: input.command,
        timeout_seconds: Math.min(timeout, ttlLeft),
        max_output_bytes: input.max_output_bytes,
      }),
      { backend: machine.handle.backend, accelerator: machine.handle.accelerator },
      ctx.live,
    );
    return { ...result, ...(machine.handle.backend === "host" ? { boot: null, boot_note: null } : boot) };
  } finally {
    await td.run();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
