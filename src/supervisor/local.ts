/**
 * The supervisor's own requests (`sup.*`), answered without the agent: status of the machine,
 * stop, pause, delete. Stop, pause and delete answer first, then end the supervisor (ending.ts).
 * TODO: validate these requests against the `sup.*` schemas once src/protocol/supervisor.ts
 * defines them (the typed protocol work).
 */
import type { Machine } from "../manager/machine.ts";
import type { ServerStream } from "../protocol/connection.ts";
import { PyroError } from "../protocol/errors.ts";
import type { Ending } from "./ending.ts";
import { saveMachine } from "./pause.ts";

export function serveLocal(
  client: ServerStream,
  op: string,
  machine: Machine,
  ending: Ending,
  home: string,
  id: string,
): void {
  switch (op) {
    case "sup.status":
      client.result({
        backend: machine.handle.backend,
        accelerator: machine.handle.accelerator,
        vmm_pid: machine.handle.pid,
        supervisor_pid: process.pid,
        kernel: machine.hello.kernel,
        boot_id: machine.hello.boot_id,
        agent_version: machine.hello.agent_version,
      });
      break;
    case "sup.stop":
      client.result({ stopping: true });
      ending.end("stopped by request");
      break;
    case "sup.pause":
      if (!machine.handle.saveState) {
        client.fail(
          new PyroError("BACKEND_UNAVAILABLE", `the ${machine.handle.backend} backend cannot pause`),
        );
        break;
      }
      client.result({ pausing: true });
      ending.end("paused", { pause: () => saveMachine(home, id, machine) });
      break;
    case "sup.delete":
      client.result({ deleting: true });
      ending.end("deleted", { deleteAfter: true });
      break;
    default:
      client.fail(new PyroError("INVALID_INPUT", `unknown supervisor request ${op}`));
  }
}
