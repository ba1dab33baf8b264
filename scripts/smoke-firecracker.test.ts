/** The pure parts of scripts/smoke-firecracker.ts (the run itself needs KVM and firecracker). */
import { describe, expect, test } from "bun:test";
import {
  CLONE_PROBE,
  COUNTER_SCRIPT,
  clonesDiffer,
  counterContinued,
  formatStep,
  parseCloneProbe,
  parseCounter,
  parseSmokeArgs,
  READ_COUNTER,
  smokeArgv,
} from "./smoke-firecracker.ts";

describe("smoke-firecracker", () => {
  test("arguments: defaults, each option, and refusals", () => {
    expect(parseSmokeArgs([], "/repo")).toEqual({
      pyro: "/repo/dist/pyro",
      home: null,
      environment: "debian:12",
      keep: false,
    });
    expect(
      parseSmokeArgs(["--pyro", "/b/pyro", "--home", "/h", "--environment", "alpine:3", "--keep"], "/repo"),
    ).toEqual({ pyro: "/b/pyro", home: "/h", environment: "alpine:3", keep: true });
    expect(() => parseSmokeArgs(["--home"], "/repo")).toThrow("--home needs a value");
    expect(() => parseSmokeArgs(["--home", "--keep"], "/repo")).toThrow("--home needs a value");
    expect(() => parseSmokeArgs(["--bogus"], "/repo")).toThrow("unknown argument --bogus");
  });

  test("every CLI call is an argv array; an id with shell metacharacters stays one argument", () => {
    const id = "ws_1; rm -rf /";
    expect(smokeArgv.exec(id, READ_COUNTER)).toEqual([
      "workspace",
      "exec",
      id,
      "--json",
      "--",
      "sh",
      "-c",
      READ_COUNTER,
    ]);
    expect(smokeArgv.pause(id)).toEqual(["workspace", "pause", id, "--json"]);
    expect(smokeArgv.resume(id)).toEqual(["workspace", "resume", id, "--json"]);
    expect(smokeArgv.delete(id)).toEqual(["workspace", "delete", id, "--json"]);
    expect(smokeArgv.create("debian:12")).toEqual([
      "workspace",
      "create",
      "debian:12",
      "--name",
      "fc-smoke",
      "--json",
    ]);
    // the counter lives in /tmp (tmpfs): only a memory resume keeps it
    expect(COUNTER_SCRIPT).toContain("/tmp/counter");
  });

  test("a counter reading is parsed; only same pid + same boot + a higher count is a memory resume", () => {
    const before = parseCounter("412\n17\nb1\n");
    expect(before).toEqual({ pid: "412", count: 17, bootId: "b1" });
    expect(parseCounter("")).toBeNull();
    expect(parseCounter("cat: /tmp/counter.pid: No such file or directory\n")).toBeNull();
    const b = before!;
    expect(counterContinued(b, { pid: "412", count: 30, bootId: "b1" })).toBeNull();
    expect(counterContinued(b, { pid: "412", count: 17, bootId: "b1" })).toContain("did not advance");
    expect(counterContinued(b, { pid: "900", count: 30, bootId: "b1" })).toContain("another process");
    expect(counterContinued(b, { pid: "412", count: 30, bootId: "b2" })).toContain("booted again");
  });

  test("two clones are two machines only with different boot ids and RNG draws and their own /workspace", () => {
    const a = parseCloneProbe("b1\nu1\n/workspace/clone-mark\n");
    const b = parseCloneProbe("b2\nu2\nno-mark\n");
    expect(a).toEqual({ bootId: "b1", uuid: "u1", marked: true });
    expect(clonesDiffer(a!, b!)).toBeNull();
    expect(clonesDiffer(a!, { ...b!, bootId: "b1" })).toContain("same boot id");
    expect(clonesDiffer(a!, { ...b!, uuid: "u1" })).toContain("same RNG draw");
    expect(clonesDiffer(a!, { ...b!, marked: true })).toContain("sees the first clone's file");
    expect(clonesDiffer({ ...a!, marked: false }, b!)).toContain("lost its own file");
    expect(parseCloneProbe("")).toBeNull();
    expect(CLONE_PROBE).toContain("boot_id");
    expect(smokeArgv.create("debian:12", "fc-smoke-2")).toContain("fc-smoke-2");
  });

  test("step lines say PASS or FAIL first", () => {
    expect(formatStep("pause", true, "memory_bytes=5")).toBe("PASS  pause: memory_bytes=5");
    expect(formatStep("delete", false, "")).toBe("FAIL  delete");
  });
});
