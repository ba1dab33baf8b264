import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PyroError } from "../protocol/errors.ts";
import {
  MAX_SOCKET_PATH,
  pdeathsigPrefix,
  prepareSocketPaths,
  settlesWithin,
  sleep,
  spawnThp,
  stopProcess,
  tailFile,
  thpDisabledHere,
  vmmThpDisabled,
} from "./process.ts";

const dir = mkdtempSync(join(tmpdir(), "pyro-process-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("pdeathsigPrefix", () => {
  test("setpriv with the signal when found on PATH, nothing when not", () => {
    expect(pdeathsigPrefix("KILL", { PATH: "/nonexistent" })).toEqual([]);
    const prefix = pdeathsigPrefix("TERM");
    if (Bun.which("setpriv")) expect(prefix.slice(1)).toEqual(["--pdeathsig", "TERM", "--"]);
    else expect(prefix).toEqual([]);
  });
});

describe("prepareSocketPaths", () => {
  test("removes a stale socket file and accepts a path of exactly the limit", () => {
    const stale = join(dir, "stale.sock");
    writeFileSync(stale, "");
    const exact = join(dir, "x".repeat(MAX_SOCKET_PATH - dir.length - 1));
    expect(Buffer.byteLength(exact)).toBe(MAX_SOCKET_PATH);
    prepareSocketPaths([stale, exact]);
    expect(existsSync(stale)).toBe(false);
  });

  test("one byte over the limit is INVALID_INPUT, and nothing is removed", () => {
    const keep = join(dir, "keep.sock");
    writeFileSync(keep, "");
    const long = join(dir, "y".repeat(MAX_SOCKET_PATH - dir.length));
    let err: unknown;
    try {
      prepareSocketPaths([long, keep]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PyroError);
    expect((err as PyroError).code).toBe("INVALID_INPUT");
    expect((err as PyroError).details?.bytes).toBe(MAX_SOCKET_PATH + 1);
    expect(existsSync(keep)).toBe(true);
  });
});

describe("tailFile", () => {
  test("the last bytes of a file, the whole of a short one, empty for a missing one", () => {
    const f = join(dir, "log");
    writeFileSync(f, "first line\nsecond line\nlast line\n");
    expect(tailFile(f, 10)).toBe("last line\n");
    expect(tailFile(f, 1000)).toBe("first line\nsecond line\nlast line\n");
    expect(tailFile(join(dir, "missing"))).toBe("");
  });
});

describe("sleep and settlesWithin", () => {
  test("sleep ends early on abort, and at once when already aborted", async () => {
    const ac = new AbortController();
    const slept = sleep(60_000, ac.signal);
    ac.abort();
    expect(await settlesWithin(slept, 1000)).toBe(true);
    expect(await settlesWithin(sleep(60_000, AbortSignal.abort()), 1000)).toBe(true);
    // without an abort, the same sleep is still pending when the check gives up
    expect(await settlesWithin(sleep(60_000, new AbortController().signal), 20)).toBe(false);
  });

  test("a rejection counts as settled", async () => {
    expect(await settlesWithin(Promise.reject(new Error("x")), 1000)).toBe(true);
  });
});

describe("stopProcess", () => {
  test("a child that obeys the ask exits without SIGKILL", async () => {
    const proc = Bun.spawn(["sleep", "60"]);
    await stopProcess(proc, proc.exited, 5000, () => proc.kill("SIGTERM"));
    expect(proc.signalCode).toBe("SIGTERM");
    expect(alive(proc.pid)).toBe(false);
  });

  test("a child that ignores the ask is killed once the time is up", async () => {
    const proc = Bun.spawn(["sh", "-c", "trap '' TERM; echo ready; sleep 60"], { stdout: "pipe" });
    const reader = proc.stdout.getReader();
    await reader.read(); // the trap is in place
    reader.releaseLock();
    await stopProcess(proc, proc.exited, 200, () => proc.kill("SIGTERM"));
    expect(proc.signalCode).toBe("SIGKILL");
    expect(alive(proc.pid)).toBe(false);
  });

  test("an ask that throws or never settles still ends in a kill", async () => {
    const a = Bun.spawn(["sleep", "60"]);
    await stopProcess(a, a.exited, 100, () => {
      throw new Error("no API socket");
    });
    expect(a.signalCode).toBe("SIGKILL");
    const b = Bun.spawn(["sleep", "60"]);
    await stopProcess(b, b.exited, 100, () => new Promise(() => {}));
    expect(b.signalCode).toBe("SIGKILL");
  });
});

describe("VMM transparent huge pages", () => {
  test("disabled unless PYRO_VMM_THP=on", () => {
    expect(vmmThpDisabled({})).toBe(true);
    expect(vmmThpDisabled({ PYRO_VMM_THP: "off" })).toBe(true);
    expect(vmmThpDisabled({ PYRO_VMM_THP: "on" })).toBe(false);
  });

  const thpField = (pid: number) =>
    /^THP_enabled:\s*(\d)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];

  test("spawnThp: the child runs with THP disabled, the spawner keeps it", async () => {
    expect(thpDisabledHere()).toBe(0);
    // the probe reads the field: a plain child shows THP enabled
    const plain = Bun.spawn(["sleep", "5"]);
    const off = spawnThp(true, () => Bun.spawn(["sleep", "5"]));
    const on = spawnThp(false, () => Bun.spawn(["sleep", "5"]));
    try {
      expect(thpField(plain.pid)).toBe("1");
      expect(thpField(off.pid)).toBe("0");
      expect(thpField(on.pid)).toBe("1");
      expect(thpDisabledHere()).toBe(0);
      expect(thpField(process.pid)).toBe("1");
    } finally {
      for (const p of [plain, off, on]) p.kill("SIGKILL");
      await Promise.all([plain.exited, off.exited, on.exited]);
    }
  });
});
