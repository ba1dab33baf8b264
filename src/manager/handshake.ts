/** The host's first words to an agent: versions must agree before anything else is sent. */
import { call, type ResultOf } from "../protocol/call.ts";
import { Connection } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { PROTOCOL_VERSION, PYRO_VERSION } from "../protocol/version.ts";
import type { ByteChannel } from "../vmm/types.ts";

export type AgentHello = ResultOf<"hello">;

export async function helloAgent(
  channel: ByteChannel,
  deadlineMs: number,
  env?: Record<string, string>,
  envName = "ENV",
  /** Called with the connection right after the hello is sent (to pipeline a next request). */
  afterSend?: (conn: Connection) => void,
): Promise<{ conn: Connection; hello: AgentHello }> {
  const conn = new Connection(channel, {
    lostCode: "GUEST_UNREACHABLE",
    lostMessage: "the guest agent closed the connection",
  });
  const timeout = Bun.sleep(Math.max(deadlineMs - Date.now(), 1)).then(() => {
    throw new PyroError("GUEST_UNREACHABLE", "the guest agent did not answer the hello in time");
  });
  const rebuild = `the environment holds an agent of another version: rebuild it with \`pyro env build ${envName} --force\``;
  let hello: AgentHello;
  try {
    const sent = call(conn, {
      op: "hello",
      protocol_version: PROTOCOL_VERSION,
      host_version: PYRO_VERSION,
      config: { clock_unix_ms: Date.now(), ...(env ? { env } : {}) },
    });
    afterSend?.(conn);
    hello = await Promise.race([sent, timeout]);
  } catch (err) {
    conn.close();
    if (err instanceof PyroError && err.code === "AGENT_VERSION_MISMATCH") {
      throw new PyroError("AGENT_VERSION_MISMATCH", err.message, { details: err.details, hint: rebuild });
    }
    // An answer that is not this protocol's hello comes from an agent of another version.
    if (err instanceof PyroError && err.code === "PROTOCOL_ERROR") {
      throw new PyroError(
        "AGENT_VERSION_MISMATCH",
        `the agent's hello answer is not protocol ${PROTOCOL_VERSION}'s: ${err.message}`,
        { details: err.details, hint: rebuild },
      );
    }
    throw err;
  }
  if (hello.protocol_version !== PROTOCOL_VERSION) {
    conn.close();
    throw new PyroError(
      "AGENT_VERSION_MISMATCH",
      `agent ${hello.agent_version} speaks protocol ${hello.protocol_version}, host ${PROTOCOL_VERSION}`,
      { hint: `rebuild the environment with \`pyro env build ${envName} --force\`` },
    );
  }
  // The hello sat in the channel while the guest booted; its clock is seconds old by now.
  // A guest not attached yet gets the clock with sys.attach (manager/machine.ts).
  if (hello.attached)
    await Promise.race([
      call(conn, { op: "clock.set", unix_ms: Date.now() }).catch(() => {}),
      Bun.sleep(2000),
    ]);
  return { conn, hello };
}
