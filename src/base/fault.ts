/**
 * Test-only crash points for the fault suite (test/faults*.test.ts, docs/reliability.md).
 *
 * `fault("create.record")` does nothing unless `PYRO_FAULT` names that step. Then, when
 * `PYRO_FAULT_PROC` is unset or names this process's role (`cli` — any process running
 * the manager: CLI, SDK, MCP server — or `supervisor`), the process kills itself with
 * SIGKILL right there: no cleanup, no exit handlers, as a crash or an OOM kill would.
 * `PYRO_FAULT_PROC=vmm` instead kills the workspace's VMM (the pid `vmm()` gives) and
 * carries on, from whichever process reaches the step first.
 *
 * `PYRO_FAULT_PROC=hold` instead stops the process that reaches the step (SIGSTOP on
 * itself) so a test can kill any other process at that exact point (the supervisor or the
 * VMM while the CLI is inside a snapshot or a reset) and then let it go on (SIGCONT).
 *
 * `PYRO_FAULT=a,b` arms several steps at once (e.g. hold two processes at two points, to
 * force an interleaving of them).
 *
 * `PYRO_FAULT_MARK=FILE` appends `<step> <role|vmm>` (hold: `<step> hold <role> <pid>`) to
 * FILE before acting, so a test can prove the step was reached.
 *
 * Invariants: the environment is read once at load; with PYRO_FAULT unset a call is one
 * comparison. The hook never changes behaviour except by killing.
 */
import { appendFileSync } from "node:fs";

/** the armed steps: PYRO_FAULT names one, or several separated by commas (each acts alike) */
const STEPS = process.env.PYRO_FAULT === undefined ? null : new Set(process.env.PYRO_FAULT.split(","));
const PROC = process.env.PYRO_FAULT_PROC;
const MARK = process.env.PYRO_FAULT_MARK;

function mark(step: string, who: string): void {
  if (MARK) appendFileSync(MARK, `${step} ${who}\n`);
}
let role: "cli" | "supervisor" = "cli";

/** The supervisor declares itself once at start; everything else is `cli`. */
export function setFaultRole(r: "cli" | "supervisor"): void {
  role = r;
}

/** A named crash point (see the header). `vmm` finds the VMM's pid for PYRO_FAULT_PROC=vmm. */
export function fault(step: string, vmm?: () => number | null | undefined): void {
  if (STEPS === null || !STEPS.has(step)) return;
  if (PROC === "vmm") {
    const pid = vmm?.();
    if (!pid) return;
    mark(step, "vmm");
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
    return;
  }
  if (PROC === "hold") {
    mark(step, `hold ${role} ${process.pid}`);
    process.kill(process.pid, "SIGSTOP");
    return;
  }
  if (PROC !== undefined && PROC !== role) return;
  mark(step, role);
  process.kill(process.pid, "SIGKILL");
}
