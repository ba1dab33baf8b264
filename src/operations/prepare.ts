/** `pyro prepare`: make an environment ready, then prove it with one throwaway workspace. */

import { join } from "node:path";
import * as v from "valibot";
import { ensureEnvironment } from "../env/prepare.ts";
import { findInstalled } from "../env/store.ts";
import { resetWorkspace } from "../manager/reset.ts";
import { ensureTemplate } from "../manager/templates.ts";
import {
  createWorkspace,
  DEFAULT_ENVIRONMENT,
  DEFAULT_MEM_MIB,
  DEFAULT_VCPU,
  deleteWorkspace,
  execWorkspace,
} from "../manager/workspaces.ts";
import { PyroError } from "../protocol/errors.ts";
import { chooseBackend } from "../vmm/select.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { defineOperation } from "./types.ts";

function kernelOf(home: string, name: string): string | null {
  const inst = findInstalled(home, name);
  return inst ? join(inst.dir, inst.manifest.kernel.file) : null;
}

export const prepareOp = defineOperation({
  name: "prepare",
  sdk: "prepare",
  output: out.prepareResult,
  mutates: false,
  cli: ["prepare"],
  positionals: ["environment"],
  summary: "Install an environment and prove it: create → exec → reset → delete.",
  description:
    "Build or pull the environment if needed (force: rebuild), make its VM template (QEMU: a booted machine saved once, which later workspaces restore instead of booting; a failed one is retried), then run one throwaway workspace through create, exec, reset and delete, timing each step. Run it once after installing pyro so the first real call is fast.",
  input: v.strictObject({
    environment: v.optional(f.environment, DEFAULT_ENVIRONMENT),
    network: v.optional(
      v.pipe(v.boolean(), v.description("Also check outbound networking in the throwaway workspace.")),
    ),
    force: v.optional(v.pipe(v.boolean(), v.description("Rebuild the environment even if installed."))),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  profiles: [],
  notOverMcp: "it builds environments (root) and boots a throwaway workspace: a setup step for the user.",
  run: async (ctx, input) => {
    const steps: Array<{ step: string; ms: number }> = [];
    const time = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
      const t = performance.now();
      const r = await fn();
      steps.push({ step, ms: Math.round(performance.now() - t) });
      ctx.progress(`prepare: ${step} ${Math.round(performance.now() - t)} ms`);
      return r;
    };
    if (input.force) {
      const { buildInstall } = await import("../env/install.ts");
      await time("build", () => buildInstall(ctx, input.environment, { force: true }));
    } else
      await time("environment", () => ensureEnvironment(ctx, input.environment, { allowMissing: false }));
    // the VM template for the default machine shape (a failed one is retried here, at once)
    const choice = await chooseBackend({
      home: ctx.home,
      env: ctx.env,
      allowHostCompat: false,
      kernelPath: kernelOf(ctx.home, input.environment),
      network: input.network ?? false,
    });
    let template: { status: string; reason: string | null } | null = null;
    if (choice.name === "qemu" && choice.accelerator) {
      const shape = {
        environment: input.environment,
        accelerator: choice.accelerator,
        vcpu_count: DEFAULT_VCPU,
        mem_mib: DEFAULT_MEM_MIB,
        network: input.network ? ("user" as const) : ("off" as const),
      };
      if (ctx.env.PYRO_TEMPLATES === "off") template = { status: "off", reason: "PYRO_TEMPLATES=off" };
      else {
        const r = await time("template", () => ensureTemplate(ctx, shape, { retryFailed: true }));
        template = {
          status: r.status.status,
          reason: r.status.status === "ready" ? null : r.status.reason,
        };
        if (template.reason)
          ctx.progress(`prepare: no VM template (${template.reason}); workspaces boot cold`);
      }
    }
    const ws = await time("create", () =>
      createWorkspace(ctx, {
        environment: input.environment,
        network_policy: input.network ? "egress" : "off",
        ttl_seconds: 600,
      }),
    );
    try {
      const probe = input.network ? "getent hosts deb.debian.org >/dev/null && echo net-ok; true" : "true";
      const r = await time("exec", () => execWorkspace(ctx, ws.workspace_id, { command: probe }));
      if (r.exit_code !== 0)
        throw new PyroError("INTERNAL", `the check command failed in the guest: ${r.stderr}`);
      if (input.network && !r.stdout.includes("net-ok"))
        ctx.progress("prepare: warning: the guest could not resolve deb.debian.org");
      await time("reset", () => resetWorkspace(ctx, ws.workspace_id));
    } finally {
      await time("delete", () => deleteWorkspace(ctx, ws.workspace_id));
    }
    return {
      environment: input.environment,
      backend: ws.backend,
      accelerator: ws.accelerator,
      template,
      boot: ws.boot ?? null,
      steps,
      ok: true,
    };
  },
  render: (out) =>
    `${out.environment} is ready (${out.backend}${out.accelerator ? `/${out.accelerator}` : ""}${out.template ? `, template ${out.template.status}` : ""}): ${(out.steps as Array<{ step: string; ms: number }>).map((s) => `${s.step} ${s.ms} ms`).join(", ")}`,
});
