/**
 * What every crash case checks once things settle (test/faults.test.ts, host compat and real
 * guests; test/faults-snapshot-guest.test.ts): no process (supervisor, QEMU), socket, tap,
 * directory or half-written disk left that `list` does not account for, and `list` and
 * `status` telling the truth.
 */
import { expect } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tapName } from "../src/vmm/net/tap.ts";
import { pyro, waitFor } from "./helpers.ts";

/** A process that belongs to a home: its argv or its environment names the home. */
export interface Proc_ {
  pid: number;
  text: string;
}
export function processesOf(home: string): Proc_[] {
  const out: Proc_[] = [];
  for (const pid of new Bun.Glob("[0-9]*").scanSync({ cwd: "/proc", onlyFiles: false })) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      const env = readFileSync(`/proc/${pid}/environ`, "utf8").replaceAll("\0", " ");
      if (
        Number(pid) !== process.pid &&
        (cmd.includes(home) || env.includes(`${home} `) || env.includes(`${home}/`))
      )
        out.push({ pid: Number(pid), text: `${cmd} ${env}` });
    } catch {}
  }
  return out;
}

export interface Listed {
  workspace_id: string;
  name: string | null;
  state: string;
}

/** Everything that must hold once the home has settled; the first violation, or null. */
export async function violation(home: string, env: Record<string, string>): Promise<string | null> {
  const list = await pyro(["workspace", "list", "--json"], { home, env });
  if (list.code !== 0) return `list failed: ${list.stdout}${list.stderr}`;
  const listed = list.json.workspaces as Listed[];
  if ((list.json.corrupt ?? []).length) return `corrupt records: ${JSON.stringify(list.json.corrupt)}`;
  const dir = join(home, "workspaces");
  const entries = existsSync(dir) ? readdirSync(dir).sort() : [];
  const ids = listed.map((w) => w.workspace_id).sort();
  if (JSON.stringify(entries) !== JSON.stringify(ids))
    return `workspaces/ holds ${JSON.stringify(entries)} but list shows ${JSON.stringify(ids)}`;
  const started = listed.filter((w) => w.state === "started").map((w) => w.workspace_id);
  const leaks = processesOf(home).filter((p) => !started.some((id) => p.text.includes(id)));
  if (leaks.length) return `leaked processes: ${leaks.map((p) => p.text.slice(0, 200)).join(" | ")}`;
  for (const w of listed) {
    const st = await pyro(["workspace", "status", w.workspace_id, "--json"], { home, env });
    if (st.json?.state !== w.state) return `status says ${st.json?.state}, list says ${w.state}`;
    const orphans = orphanFiles(join(dir, w.workspace_id));
    if (orphans.length) return `${w.workspace_id} holds half-written files ${JSON.stringify(orphans)}`;
    const sock = join(dir, w.workspace_id, "run", "supervisor.sock");
    const sup = processesOf(home).filter(
      (p) => p.text.includes(w.workspace_id) && p.text.includes("__supervise"),
    );
    if (w.state === "started" && (sup.length !== 1 || !existsSync(sock)))
      return `${w.workspace_id} is listed started with ${sup.length} supervisors, socket ${existsSync(sock)}`;
    if (w.state !== "started" && (sup.length || existsSync(sock)))
      return `${w.workspace_id} is listed ${w.state} with ${sup.length} supervisors, socket ${existsSync(sock)}`;
    if (w.state !== "started") {
      const run = join(dir, w.workspace_id, "run");
      const socks = existsSync(run) ? readdirSync(run).filter((f) => f.endsWith(".sock")) : [];
      if (socks.length) return `${w.workspace_id} is listed ${w.state} with sockets ${JSON.stringify(socks)}`;
      if (tapLeft(w.workspace_id)) return `${w.workspace_id} is listed ${w.state} with its tap up`;
    }
  }
  return null;
}

/** A workspace's half-written files: a disk being built (`disk.ext4.new-*`), any `*.tmp-*`. */
export function orphanFiles(wsDir: string): string[] {
  const snaps = join(wsDir, "snapshots");
  return [
    ...(existsSync(wsDir) ? readdirSync(wsDir) : []).filter((f) => /\.new-|\.tmp-/.test(f)),
    ...(existsSync(snaps) ? readdirSync(snaps) : [])
      .filter((f) => /\.tmp-/.test(f))
      .map((f) => `snapshots/${f}`),
  ];
}

/** Does the workspace's tap device (allow-list networking) still exist? */
export function tapLeft(workspaceId: string): boolean {
  return /^ws_[0-9a-f]{12}$/.test(workspaceId) && existsSync(`/sys/class/net/${tapName(workspaceId)}`);
}

/** Wait until the home settles (a supervisor noticing a death needs a moment), then assert it. */
export async function expectSettled(
  home: string,
  env: Record<string, string>,
  timeoutMs = 20000,
): Promise<Listed[]> {
  let last: string | null = "not checked";
  await waitFor(async () => {
    last = await violation(home, env);
    return last === null;
  }, timeoutMs);
  expect(last).toBeNull();
  return (await pyro(["workspace", "list", "--json"], { home, env })).json.workspaces;
}
