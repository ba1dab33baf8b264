/** The host's first words to an agent: versions must agree before anything else is sent. */
import { Connection } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import { PROTOCOL_VERSION, PYRO_VERSION } from "../protocol/version.ts";
import type { ByteChannel } from "../vmm/types.ts";

export interface AgentHello {
  protocol_version: number;
  agent_version: string;
  kernel: string;
  boot_id: string;
  pid1: boolean;
}

export async function helloAgent(
  channel: ByteChannel,
  deadlineMs: number,
  env?: Record<string, string>,
  envName = "ENV",
): Promise<{ conn: Connection; hello: AgentHello }> {
  const conn = new Connection(channel, {
    lostCode: "GUEST_UNREACHABLE",
    lostMessage: "the guest agent closed the connection",
  });
  const request = {
    op: "hello",
    protocol_version: PROTOCOL_VERSION,
    host_version: PYRO_VERSION,
    config: { clock_unix_ms: Date.now(), ...(env ? { env } : {}) },
  };
  const timeout = Bun.sleep(Math.max(deadlineMs - Date.now(), 1)).then(() => {
    throw new PyroError("GUEST_UNREACHABLE", "the guest agent did not answer the hello in time");
  });
  let result: Record<string, unknown>;
  try {
    result = await Promise.race([conn.call(request), timeout]);
  } catch (err) {
    conn.close();
    if (err instanceof PyroError && err.code === "AGENT_VERSION_MISMATCH") {
      throw new PyroError("AGENT_VERSION_MISMATCH", err.message, {
        details: err.details,
        hint: `the environment holds an agent of another version: rebuild it with \`pyro env build ${envName} --force\``,
      });
    }
    throw err;
  }
  if (result.protocol_version !== PROTOCOL_VERSION) {
    conn.close();
    throw new PyroError(
      "AGENT_VERSION_MISMATCH",
      `agent ${String(result.agent_version)} speaks protocol ${String(result.protocol_version)}, host ${PROTOCOL_VERSION}`,
      {
        hint: `rebuild the environment with \`pyro env build ${envName} --force\``,
      },
    );
  }
  // The hello sat in the channel while the guest booted; its clock is seconds old by now.
  await Promise.race([conn.call({ op: "clock.set", unix_ms: Date.now() }).catch(() => {}), Bun.sleep(2000)]);
  return { conn, hello: result as unknown as AgentHello };
}
