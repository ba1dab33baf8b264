import * as v from "valibot";
import { runOnce } from "../manager/run.ts";
import { DEFAULT_ENVIRONMENT } from "../manager/workspaces.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { defineOperation } from "./types.ts";

export const runOp = defineOperation({
  name: "vm_run",
  sdk: "run",
  output: out.runResult,
  mutates: false,
  cli: ["run"],
  positionals: ["environment"],
  rest: "command",
  summary: "Run one command in a fresh, disposable microVM and return its output.",
  description:
    "Boot a fresh disposable Linux microVM from an environment, run one command in /workspace, return exit_code, stdout and stderr, and destroy the VM. Nothing persists between calls: use workspace_create for state. The result says where it ran (execution_mode, backend, accelerator) and how the VM came up (boot: template or cold, boot_note: why cold). A timeout is a result (timed_out: true, exit_code 124), not an error.",
  input: v.strictObject({
    environment: v.optional(f.environment, DEFAULT_ENVIRONMENT),
    command: f.command,
    vcpu_count: v.optional(f.vcpuCount),
    mem_mib: v.optional(f.memMib),
    timeout_seconds: v.optional(f.timeoutSeconds),
    ttl_seconds: v.optional(
      v.pipe(
        v.number(),
        v.integer(),
        v.minValue(0),
        v.maxValue(f.TTL_MAX_SECONDS),
        v.description(
          "Bound on the disposable VM's whole life, boot included (default 600; 0 = none; at most 2592000 = 30 days); a command still running then is a timed-out result.",
        ),
      ),
    ),
    network: v.optional(
      v.pipe(
        v.boolean(),
        v.description(
          "Give the VM outbound network access (off by default; allow_hosts/allow_cidrs imply it and restrict it).",
        ),
      ),
    ),
    allow_hosts: v.optional(f.allowHosts),
    allow_cidrs: v.optional(f.allowCidrs),
    allow_host_compat: v.optional(f.allowHostCompat),
    max_output_bytes: v.optional(f.maxOutputBytes),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  profiles: ["vm-run", "workspace-core", "workspace-full"],
  examples: ["pyro run debian:12 -- git --version", "pyro run --json debian:12 -- sh -c 'echo hi; exit 3'"],
  streamsOutput: true,
  run: (ctx, input) => runOnce(ctx, input),
  exitCode: (out) => Number(out.exit_code),
});
