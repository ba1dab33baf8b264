/**
 * Where pyro keeps workspaces. Pure functions of the home directory so tests point them
 * anywhere; the home itself and the directories shared with src/env are src/base/paths.ts.
 */
import { join } from "node:path";

export { buildCacheDir, type Env, environmentsDir, pyroHome } from "../base/paths.ts";

export const workspacesDir = (home: string) => join(home, "workspaces");
export const workspaceDir = (home: string, id: string) => join(home, "workspaces", id);
export const recordPath = (home: string, id: string) => join(workspaceDir(home, id), "workspace.json");
export const historyPath = (home: string, id: string) => join(workspaceDir(home, id), "history.jsonl");
export const runDir = (home: string, id: string) => join(workspaceDir(home, id), "run");
export const logsDir = (home: string, id: string) => join(workspaceDir(home, id), "logs");
/** host backend: the directory served as /workspace */
export const hostRootDir = (home: string, id: string) => join(workspaceDir(home, id), "root");
/** guest backends: the writable data disk */
export const dataDiskPath = (home: string, id: string) => join(workspaceDir(home, id), "disk.ext4");
export const supervisorSocket = (home: string, id: string) => join(runDir(home, id), "supervisor.sock");
export const consoleLogPath = (home: string, id: string) => join(logsDir(home, id), "console.log");
export const supervisorLogPath = (home: string, id: string) => join(logsDir(home, id), "supervisor.log");
export const locksDir = (home: string) => join(home, "locks");
export const runsDir = (home: string) => join(home, "runs");

/** In run/: the supervisor writes READY_FILE (its pid) once the machine is up, or BOOT_ERROR_FILE (the error) when boot failed. */
export const READY_FILE = "supervisor.ready";
export const BOOT_ERROR_FILE = "boot-error.json";
