import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket, UnixSocketListener } from "bun";
import { PyroError } from "../../protocol/errors.ts";
import { connectQmp, type QmpEvent } from "./qmp.ts";

const GREETING = {
  QMP: { version: { qemu: { micro: 22, minor: 2, major: 7 }, package: "Debian" }, capabilities: ["oob"] },
};

let dir = "";
let server: UnixSocketListener<any> | null = null;
afterEach(() => {
  server?.stop(true);
  server = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A fake QEMU monitor: answers like QEMU 7.2, records what it was asked. */
function fakeQmp(opts: { quitSilently?: boolean; neverAnswer?: string } = {}) {
  dir = mkdtempSync(join(tmpdir(), "pyro-qmp-"));
  const path = join(dir, "qmp.sock");
  const asked: string[] = [];
  let negotiated = false;
  const send = (s: Socket<any>, obj: unknown) => s.write(`${JSON.stringify(obj)}\r\n`);
  server = Bun.listen({
    unix: path,
    socket: {
      open: (s) => void send(s, GREETING),
      data(s, bytes) {
        for (const line of new TextDecoder().decode(bytes).split("\n")) {
          if (!line.trim()) continue;
          const msg = JSON.parse(line);
          asked.push(msg.execute);
          const id = msg.id;
          if (msg.execute === opts.neverAnswer) continue;
          if (msg.execute === "qmp_capabilities") {
            negotiated = true;
            send(s, { return: {}, id });
          } else if (!negotiated) {
            send(s, { error: { class: "CommandNotFound", desc: "Expecting capabilities negotiation" }, id });
          } else if (msg.execute === "query-status") {
            send(s, { event: "RESUME", data: {}, timestamp: { seconds: 1, microseconds: 2 } });
            send(s, { return: { status: "running", singlestep: false, running: true }, id });
          } else if (msg.execute === "system_powerdown") {
            send(s, { return: {}, id });
            send(s, { event: "POWERDOWN", timestamp: { seconds: 1, microseconds: 3 } });
          } else if (msg.execute === "quit") {
            if (!opts.quitSilently) send(s, { return: {}, id });
            s.end();
          } else {
            send(s, {
              error: { class: "CommandNotFound", desc: `The command ${msg.execute} has not been found` },
              id,
            });
          }
        }
      },
    },
  });
  return { path, asked };
}

test("negotiates, queries status, sees events, quits", async () => {
  const fake = fakeQmp();
  const qmp = await connectQmp(fake.path, Date.now() + 2000);
  expect(qmp.version).toEqual({ major: 7, minor: 2, micro: 22 });
  const events: QmpEvent[] = [];
  qmp.onEvent((e) => events.push(e));
  expect(await qmp.queryStatus()).toMatchObject({ status: "running", running: true });
  await qmp.systemPowerdown();
  await qmp.quit();
  await qmp.closed;
  expect(fake.asked).toEqual(["qmp_capabilities", "query-status", "system_powerdown", "quit"]);
  expect(events.map((e) => e.event)).toEqual(["RESUME", "POWERDOWN"]);
});

test("QMP errors become VMM_FAILED with class and description", async () => {
  const fake = fakeQmp();
  const qmp = await connectQmp(fake.path, Date.now() + 2000);
  const err: any = await qmp.execute("no-such-command").catch((e) => e);
  expect(err).toBeInstanceOf(PyroError);
  expect(err.code).toBe("VMM_FAILED");
  expect(err.details).toMatchObject({ command: "no-such-command", class: "CommandNotFound" });
  qmp.close();
});

test("quit counts as done when QEMU drops the connection without answering", async () => {
  const fake = fakeQmp({ quitSilently: true });
  const qmp = await connectQmp(fake.path, Date.now() + 2000);
  await qmp.quit();
  await qmp.quit(); // after close: still fine
});

test("pending commands fail when the connection closes", async () => {
  const fake = fakeQmp({ neverAnswer: "query-status" });
  const qmp = await connectQmp(fake.path, Date.now() + 2000);
  const pending = qmp.queryStatus().catch((e) => e);
  await Bun.sleep(20);
  server!.stop(true);
  const err = await pending;
  expect(err).toBeInstanceOf(PyroError);
  expect(err.code).toBe("VMM_FAILED");
});

test("no QMP socket: VMM_FAILED at the deadline", async () => {
  dir = mkdtempSync(join(tmpdir(), "pyro-qmp-"));
  const err: any = await connectQmp(join(dir, "none.sock"), Date.now() + 100).catch((e) => e);
  expect(err).toBeInstanceOf(PyroError);
  expect(err.code).toBe("VMM_FAILED");
});
