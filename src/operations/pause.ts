/** Pause and resume: save a running workspace's whole machine to disk and continue it later. */
import * as v from "valibot";
import { pauseWorkspace, resumeWorkspace } from "../manager/pause.ts";
import { publicRecord } from "../manager/record.ts";
import * as f from "./fields.ts";
import * as out from "./outputs.ts";
import { renderWorkspace } from "./render.ts";
import { defineOperation } from "./types.ts";

const ref = v.strictObject({ workspace_id: f.workspaceRef });

export const pauseOp = defineOperation({
  name: "workspace_pause",
  sdk: "pauseWorkspace",
  sdkArgs: ["workspace_id"],
  output: out.pauseResult,
  mutates: true,
  states: ["started", "paused"],
  cli: ["workspace", "pause"],
  positionals: ["workspace_id"],
  examples: [
    "pyro workspace exec dev -- sh -c 'setsid -f sh -c \"while :; do date >> /tmp/ticks; sleep 1; done\"'",
    "pyro workspace pause dev          # state: paused; no VMM, no RAM held",
    "pyro workspace resume dev         # the loop goes on writing /tmp/ticks",
  ],
  summary: "Save a running workspace's memory to disk and free its RAM.",
  description:
    "Freeze the workspace's machine and save its full memory and device state to the host, then stop the VM so it holds no RAM. Processes started by exec (background jobs, daemons) continue where they were on workspace_resume (or on the next operation that needs the machine, which resumes it first); shells, detached execs (recorded lost) and services started with service_start end with the paused session. Pausing a paused workspace does nothing.",
  input: ref,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-full"],
  run: async (ctx, input) => {
    const { record, memory_bytes } = await pauseWorkspace(ctx, input.workspace_id);
    return { ...publicRecord(record), memory_bytes };
  },
  render: (o) => `${renderWorkspace(o)}\n  memory:      ${o.memory_bytes} bytes saved`,
});

export const resumeOp = defineOperation({
  name: "workspace_resume",
  sdk: "resumeWorkspace",
  sdkArgs: ["workspace_id"],
  output: out.resumeResult,
  mutates: true,
  states: ["paused", "started"],
  cli: ["workspace", "resume"],
  positionals: ["workspace_id"],
  examples: ["pyro workspace resume dev --json   # resumed_from: memory (or cold_boot with a note)"],
  summary: "Continue a paused workspace from its saved memory.",
  description:
    "Restore a paused workspace's machine from its saved memory: processes continue where they were and the guest clock is set to now. If the saved state cannot be used the workspace boots from its disk instead (resumed_from says which). Resuming a running workspace does nothing. Calling it is optional: any operation that needs the machine (exec, file, diff, shell...) resumes a paused workspace first, and workspace_create's auto_pause_after_seconds pauses an idle one by itself.",
  input: ref,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  profiles: ["workspace-full"],
  run: async (ctx, input) => {
    const { record, resumed_from, note } = await resumeWorkspace(ctx, input.workspace_id);
    return { ...publicRecord(record), resumed_from, note };
  },
  render: (o) =>
    `${renderWorkspace(o)}\n  resumed:     from ${o.resumed_from.replace("_", " ")}${o.note ? ` — ${o.note}` : ""}`,
});
