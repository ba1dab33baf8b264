import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import type { Connection } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { AgentLink } from "./agent.ts";
import { overdue, type Probe } from "./deadline.ts";

const home = () => mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "agentlink-"));
const link = (runState?: () => Promise<string>) =>
  new AgentLink({} as Connection, home(), "w-test", runState ? { runState } : undefined);

describe("a silent agent explained by its VMM's run state", () => {
  test("io-error: IO_ERROR naming the host I/O error, with the run state and the free bytes", async () => {
    const e = (await link(async () => "io-error").haltedError()) as PyroError;
    expect(e).toBeInstanceOf(PyroError);
    expect(e.code).toBe("IO_ERROR");
    expect(e.message).toBe("the VM is paused on a host I/O error (host disk full?)");
    expect(e.details?.vm_status).toBe("io-error");
    expect(typeof e.details?.host_free_bytes).toBe("number");
    expect(e.hint).toContain("free space");
  });

  test("guest-panicked, internal-error, shutdown: VMM_FAILED naming the state", async () => {
    for (const s of ["guest-panicked", "internal-error", "shutdown"]) {
      const e = (await link(async () => s).haltedError()) as PyroError;
      expect(e.code).toBe("VMM_FAILED");
      expect(e.details?.vm_status).toBe(s);
    }
  });

  test("running, paused by a user, a VMM that cannot say or does not answer: no explanation", async () => {
    expect(await link(async () => "running").haltedError()).toBeNull();
    expect(await link(async () => "paused").haltedError()).toBeNull();
    expect(await link().haltedError()).toBeNull();
    expect(await link(() => Promise.reject(new Error("QEMU has exited"))).haltedError()).toBeNull();
    expect(await link(() => new Promise<string>(() => {})).haltedError()).toBeNull();
  }, 10_000);

  test("overdue: a halted probe outcome is the verdict, the agent counted dead", async () => {
    const halted = new PyroError("IO_ERROR", "the VM is paused on a host I/O error (host disk full?)");
    const probe: Probe = async () => ({ halted });
    const started = Date.now() - 60_000; // long past its idle mark: probed at once
    const verdict = await overdue(
      { op: "fs.read", started, lastProgress: started, pid: null },
      probe,
      new AbortController().signal,
      "hint",
    );
    expect(verdict?.error).toBe(halted);
    expect(verdict?.agentDead).toBe(true);
    // the probe: a plain silent outcome is the generic AGENT_UNRESPONSIVE
    const silent = await overdue(
      { op: "fs.read", started, lastProgress: started, pid: null },
      async () => "silent",
      new AbortController().signal,
      "hint",
    );
    expect(silent?.error.code).toBe("AGENT_UNRESPONSIVE");
  });
});
