/** Where pyro keeps things. Pure functions of the environment so tests point them anywhere. */
import os from "node:os";
import { join } from "node:path";

export type Env = Record<string, string | undefined>;

export function pyroHome(env: Env = process.env): string {
  if (env.PYRO_HOME) return env.PYRO_HOME;
  const data = env.XDG_DATA_HOME || join(env.HOME || os.homedir(), ".local", "share");
  return join(data, "pyro");
}

/** Build cache (kernel, debootstrap trees): large, reusable across PYRO_HOMEs. */
export function buildCacheDir(env: Env = process.env): string {
  if (env.PYRO_BUILD_CACHE) return env.PYRO_BUILD_CACHE;
  const cache = env.XDG_CACHE_HOME || join(env.HOME || os.homedir(), ".cache");
  return join(cache, "pyro", "build");
}

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
export const environmentsDir = (home: string) => join(home, "environments");
export const runsDir = (home: string) => join(home, "runs");
