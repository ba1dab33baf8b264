import { describe, expect, test } from "bun:test";
import { channelPair } from "../protocol/channels.ts";
import { Connection } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { helloAgent } from "./handshake.ts";

/** A stand-in agent that answers hello the way an agent of another version would. */
function fakeAgent(answer: (req: Record<string, unknown>) => Record<string, unknown> | PyroError | null) {
  const [host, agent] = channelPair();
  new Connection(agent, {
    onStream: (s) => {
      const a = answer(s.request);
      if (a instanceof PyroError) s.fail(a);
      else if (a) s.result(a);
    },
  });
  return host;
}

describe("hello handshake", () => {
  test("an agent that speaks another protocol version → AGENT_VERSION_MISMATCH with a rebuild hint", async () => {
    const ch = fakeAgent(() => ({
      protocol_version: PROTOCOL_VERSION + 1,
      agent_version: "9.9.9",
      kernel: "k",
      boot_id: "b",
      pid1: false,
      root: "/workspace",
      attached: true,
    }));
    const err = await helloAgent(ch, Date.now() + 2000).catch((e) => e);
    expect(err).toBeInstanceOf(PyroError);
    expect(err.code).toBe("AGENT_VERSION_MISMATCH");
    expect(err.hint).toContain("pyro env build");
  });

  test("an agent that refuses our version → AGENT_VERSION_MISMATCH with a rebuild hint", async () => {
    const ch = fakeAgent(
      () => new PyroError("AGENT_VERSION_MISMATCH", "host speaks protocol 1, agent speaks 2"),
    );
    const err = await helloAgent(ch, Date.now() + 2000).catch((e) => e);
    expect(err.code).toBe("AGENT_VERSION_MISMATCH");
    expect(err.hint).toContain("--force");
  });

  test("an agent that never answers → GUEST_UNREACHABLE at the deadline", async () => {
    const ch = fakeAgent(() => null);
    const err = await helloAgent(ch, Date.now() + 200).catch((e) => e);
    expect(err.code).toBe("GUEST_UNREACHABLE");
  });

  test("a matching agent: the hello is returned and the connection stays open", async () => {
    const ch = fakeAgent((req) => ({
      protocol_version: req.protocol_version as number,
      agent_version: "x",
      kernel: "6.1.0-pyro",
      boot_id: "id",
      pid1: false,
      root: "/workspace",
      attached: true,
    }));
    const { conn, hello } = await helloAgent(ch, Date.now() + 2000);
    expect(hello.kernel).toBe("6.1.0-pyro");
    expect(conn.isClosed).toBe(false);
    conn.close();
  });

  test("a hello answer that is not this protocol's → AGENT_VERSION_MISMATCH naming the field", async () => {
    const ch = fakeAgent((req) => ({
      protocol_version: req.protocol_version as number,
      agent_version: "x",
      kernel: 6, // a number where the protocol says string
      boot_id: "id",
      pid1: false,
      root: "/workspace",
      attached: true,
    }));
    const err = await helloAgent(ch, Date.now() + 2000).catch((e) => e);
    expect(err).toBeInstanceOf(PyroError);
    expect(err.code).toBe("AGENT_VERSION_MISMATCH");
    expect(err.message).toContain("hello result");
    expect(err.message).toContain("kernel");
    expect(err.details).toEqual({ op: "hello", field: "kernel" });
    expect(err.hint).toContain("--force");
  });
});
