/** THE table. CLI commands, SDK methods and MCP tools are all derived from this list. */
import { diskExportOp, diskListOp, diskReadOp } from "./disk.ts";
import { doctorOp } from "./doctor.ts";
import {
  envBuildOp,
  envCreateOp,
  envDeleteOp,
  envInspectOp,
  envListOp,
  envLoadOp,
  envPruneOp,
  envPullOp,
  envPushOp,
  envSaveOp,
} from "./env.ts";
import { execKillOp, execListOp, execReadOp, execWaitOp } from "./exec.ts";
import { diffOp, exportOp, fileListOp, fileReadOp, fileWriteOp, patchApplyOp, syncPushOp } from "./files.ts";
import { hostConnectOp, hostDoctorOp, hostPrintConfigOp, hostRepairOp } from "./host.ts";
import { pauseOp, resumeOp } from "./pause.ts";
import { prepareOp } from "./prepare.ts";
import { runOp } from "./run.ts";
import { serviceListOp, serviceLogsOp, serviceStartOp, serviceStatusOp, serviceStopOp } from "./service.ts";
import {
  shellCloseOp,
  shellListOp,
  shellOpenOp,
  shellReadOp,
  shellResizeOp,
  shellSignalOp,
  shellWriteOp,
} from "./shell.ts";
import { resetOp, snapshotCreateOp, snapshotDeleteOp, snapshotListOp, summaryOp } from "./state.ts";
import type { AnyOperation } from "./types.ts";
import {
  createOp,
  deleteOp,
  execOp,
  listOp,
  logsOp,
  startOp,
  statusOp,
  stopOp,
  updateOp,
} from "./workspace.ts";

export const OPERATIONS = [
  runOp,
  createOp,
  listOp,
  statusOp,
  updateOp,
  logsOp,
  execOp,
  execReadOp,
  execWaitOp,
  execKillOp,
  execListOp,
  syncPushOp,
  fileListOp,
  fileReadOp,
  fileWriteOp,
  patchApplyOp,
  diffOp,
  exportOp,
  snapshotCreateOp,
  snapshotListOp,
  snapshotDeleteOp,
  resetOp,
  summaryOp,
  shellOpenOp,
  shellReadOp,
  shellWriteOp,
  shellSignalOp,
  shellResizeOp,
  shellCloseOp,
  shellListOp,
  serviceStartOp,
  serviceListOp,
  serviceStatusOp,
  serviceLogsOp,
  serviceStopOp,
  diskListOp,
  diskReadOp,
  diskExportOp,
  stopOp,
  startOp,
  pauseOp,
  resumeOp,
  deleteOp,
  doctorOp,
  prepareOp,
  envListOp,
  envInspectOp,
  envBuildOp,
  envPullOp,
  envPushOp,
  envPruneOp,
  envSaveOp,
  envLoadOp,
  envCreateOp,
  envDeleteOp,
  hostConnectOp,
  hostPrintConfigOp,
  hostDoctorOp,
  hostRepairOp,
] as const;

export function findOperation(name: string): AnyOperation | undefined {
  return (OPERATIONS as readonly AnyOperation[]).find((o) => o.name === name);
}

export { invoke } from "./invoke.ts";
export type { AnyOperation, Operation, Profile } from "./types.ts";
