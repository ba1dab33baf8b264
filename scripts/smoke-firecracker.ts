/**
 * Firecracker smoke for a KVM host (docs/firecracker.md "KVM smoke"): with `firecracker` on
 * PATH (or PYRO_FIRECRACKER_BIN) and a read/writable /dev/kvm, drive the real CLI through
 * create (from the environment's Firecracker VM template, made by that first create) → exec →
 * a second templated create (the two clones have different boot ids and RNG streams, and a
 * file written in one is not in the other) → background counter → pause → resume (the counter
 * kept its pid and boot and keeps counting) → delete (no VMM left), printing PASS/FAIL per
 * step. Exit 0 only if every step passed.
 *
 *   bun scripts/smoke-firecracker.ts [--pyro dist/pyro] [--home DIR] [--environment debian:12] [--keep]
 *
 * `--home` defaults to a fresh temporary PYRO_HOME (removed afterwards unless --keep); the
 * environment is then built or pulled there on first use, so pass a home that has it installed
 * to save that time. Every command is an argv array; nothing is built into a shell string
 * (the counter's own `sh -c` text is a constant).
 */
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface SmokeOptions {
  pyro: string;
  home: string | null;
  environment: string;
  keep: boolean;
}

export function parseSmokeArgs(argv: readonly string[], root: string): SmokeOptions {
  const o: SmokeOptions = {
    pyro: join(root, "dist", "pyro"),
    home: null,
    environment: "debian:12",
    keep: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--pyro") o.pyro = value();
    else if (a === "--home") o.home = value();
    else if (a === "--environment") o.environment = value();
    else if (a === "--keep") o.keep = true;
    else
      throw new Error(
        `unknown argument ${a} (usage: [--pyro BIN] [--home DIR] [--environment ENV] [--keep])`,
      );
  }
  return o;
}

/** The background counter: its pid, then a number every 0.2 s, in /tmp (tmpfs: only a memory restore keeps it). */
export const COUNTER_SCRIPT =
  "setsid -f sh -c 'echo $$ > /tmp/counter.pid; i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done' </dev/null >/dev/null 2>&1";
export const READ_COUNTER = "cat /tmp/counter.pid /tmp/counter /proc/sys/kernel/random/boot_id";

/** argv (after the pyro binary) of each CLI call the smoke makes. */
export const smokeArgv = {
  create: (env: string, name = "fc-smoke") => ["workspace", "create", env, "--name", name, "--json"],
  status: (id: string) => ["workspace", "status", id, "--json"],
  exec: (id: string, script: string) => ["workspace", "exec", id, "--json", "--", "sh", "-c", script],
  pause: (id: string) => ["workspace", "pause", id, "--json"],
  resume: (id: string) => ["workspace", "resume", id, "--json"],
  delete: (id: string) => ["workspace", "delete", id, "--json"],
};

/** What tells two clones apart: the boot id, an RNG draw, and whether the other's file shows. */
export const CLONE_PROBE =
  "cat /proc/sys/kernel/random/boot_id /proc/sys/kernel/random/uuid; ls /workspace/clone-mark 2>/dev/null || echo no-mark";
export const MARK_CLONE = "echo one > /workspace/clone-mark";

export interface CloneReading {
  bootId: string;
  uuid: string;
  marked: boolean;
}

export function parseCloneProbe(stdout: string): CloneReading | null {
  const [bootId, uuid, mark] = stdout.trim().split("\n");
  if (!bootId || !uuid || !mark) return null;
  return { bootId, uuid, marked: mark !== "no-mark" };
}

/** Two clones of one template must be two machines: why not, or null. */
export function clonesDiffer(a: CloneReading, b: CloneReading): string | null {
  if (a.bootId === b.bootId) return `same boot id ${a.bootId}`;
  if (a.uuid === b.uuid) return `same RNG draw ${a.uuid}`;
  if (!a.marked) return "the first clone lost its own file";
  if (b.marked) return "the second clone sees the first clone's file";
  return null;
}

export interface CounterReading {
  pid: string;
  count: number;
  bootId: string;
}

export function parseCounter(stdout: string): CounterReading | null {
  const [pid, count, bootId] = stdout.trim().split("\n");
  const n = Number(count);
  if (!pid || !/^\d+$/.test(pid) || !Number.isInteger(n) || !bootId) return null;
  return { pid, count: n, bootId };
}

/** A memory resume: same process, same boot, and the count went on from where it was. */
export function counterContinued(before: CounterReading, after: CounterReading): string | null {
  if (after.bootId !== before.bootId) return "the guest booted again (boot id changed): not a memory resume";
  if (after.pid !== before.pid) return `the counter is another process (${before.pid} → ${after.pid})`;
  if (after.count <= before.count) return `the counter did not advance (${before.count} → ${after.count})`;
  return null;
}

export function formatStep(name: string, ok: boolean, detail: string): string {
  return `${ok ? "PASS" : "FAIL"}  ${name}${detail ? `: ${detail}` : ""}`;
}

// ---- the run (needs KVM and firecracker) ----

interface CliResult {
  code: number;
  json: any;
  stdout: string;
  stderr: string;
}

async function main(): Promise<number> {
  const root = join(import.meta.dir, "..");
  const opts = parseSmokeArgs(process.argv.slice(2), root);
  const env = { ...process.env, PYRO_BACKEND: "firecracker" } as Record<string, string>;
  let failed = 0;
  const step = (name: string, ok: boolean, detail = "") => {
    if (!ok) failed++;
    console.log(formatStep(name, ok, detail));
    return ok;
  };
  const cli = async (args: string[]): Promise<CliResult> => {
    const p = Bun.spawn([opts.pyro, ...args], { env, stdout: "pipe", stderr: "inherit", stdin: "ignore" });
    const [stdout, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    let json: any = null;
    try {
      json = JSON.parse(stdout);
    } catch {}
    return { code, json, stdout, stderr: "" };
  };
  const sh = async (id: string, script: string) => cli(smokeArgv.exec(id, script));

  const fcBin = env.PYRO_FIRECRACKER_BIN || Bun.which("firecracker");
  if (!step("firecracker binary", !!fcBin, fcBin ?? "not on PATH and PYRO_FIRECRACKER_BIN unset")) return 1;
  let kvm = true;
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    kvm = false;
  }
  if (!step("/dev/kvm read/writable", kvm)) return 1;
  const home = opts.home ?? mkdtempSync(join(tmpdir(), "pyro-fc-smoke-"));
  env.PYRO_HOME = home;

  let id = "";
  try {
    const c = await cli(smokeArgv.create(opts.environment));
    id = c.json?.workspace_id ?? "";
    if (!step("create", c.code === 0 && !!id, id || c.stdout.trim())) return 1;
    const s = await cli(smokeArgv.status(id));
    step(
      "runs on firecracker/kvm",
      s.json?.backend === "firecracker" && s.json?.accelerator === "kvm",
      `${s.json?.backend}/${s.json?.accelerator}`,
    );
    step(
      "create restored the Firecracker VM template",
      s.json?.boot === "template",
      `boot=${s.json?.boot} ${s.json?.boot_note ?? ""}`,
    );
    const e = await sh(id, "echo hello from $(uname -r)");
    step(
      "exec",
      e.code === 0 && String(e.json?.stdout).startsWith("hello from"),
      String(e.json?.stdout ?? "").trim(),
    );
    // a second clone of the same template: another machine
    await sh(id, MARK_CLONE);
    const c2 = await cli(smokeArgv.create(opts.environment, "fc-smoke-2"));
    const id2 = c2.json?.workspace_id ?? "";
    if (
      step(
        "second templated create",
        c2.code === 0 && !!id2 && c2.json?.boot === "template",
        `${id2} boot=${c2.json?.boot}`,
      )
    ) {
      const a = parseCloneProbe((await sh(id, CLONE_PROBE)).json?.stdout ?? "");
      const b = parseCloneProbe((await sh(id2, CLONE_PROBE)).json?.stdout ?? "");
      const why = a && b ? clonesDiffer(a, b) : "no reading";
      step(
        "two clones: own boot id, own RNG, own /workspace",
        why === null,
        why ?? `${a?.bootId} vs ${b?.bootId}`,
      );
    }
    if (id2) step("delete the second clone", (await cli(smokeArgv.delete(id2))).code === 0);
    const started = await sh(id, COUNTER_SCRIPT);
    step("background counter started", started.code === 0);
    await Bun.sleep(1500);
    const before = parseCounter((await sh(id, READ_COUNTER)).json?.stdout ?? "");
    step("counter counting", !!before && before.count > 0, before ? `at ${before.count}` : "no reading");
    const p = await cli(smokeArgv.pause(id));
    step("pause", p.code === 0 && p.json?.state === "paused", `memory_bytes=${p.json?.memory_bytes}`);
    const ps = await cli(smokeArgv.status(id));
    step("status says paused", ps.json?.state === "paused", String(ps.json?.state));
    await Bun.sleep(1000);
    const r = await cli(smokeArgv.resume(id));
    step(
      "resume from memory",
      r.code === 0 && r.json?.resumed_from === "memory",
      `${r.json?.resumed_from ?? r.stdout.trim()}${r.json?.note ? ` (${r.json.note})` : ""}`,
    );
    await Bun.sleep(1000);
    const after = parseCounter((await sh(id, READ_COUNTER)).json?.stdout ?? "");
    const why = before && after ? counterContinued(before, after) : "no reading";
    step(
      "counter kept counting across pause/resume",
      why === null,
      why ?? `${before?.count} → ${after?.count}, pid ${after?.pid}`,
    );
  } finally {
    if (id) {
      const d = await cli(smokeArgv.delete(id));
      step("delete", d.code === 0);
      const left = Bun.spawnSync(["pgrep", "-f", id]).stdout.toString().trim();
      step("no VMM or supervisor left", left === "", left);
    }
    if (!opts.home && !opts.keep) rmSync(home, { recursive: true, force: true });
  }
  console.log(
    failed === 0 ? "smoke-firecracker: all steps passed" : `smoke-firecracker: ${failed} step(s) failed`,
  );
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) process.exit(await main());
