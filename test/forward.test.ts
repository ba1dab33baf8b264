/**
 * Published ports (src/supervisor/forward.ts) without a VM:
 * - in process: PortForwards over the real agent dispatcher (guest/server.ts on an in-memory
 *   channel; it connects to 127.0.0.1 like a host-compat agent), the shared cases of
 *   test/forward-cases.ts, and flow control: a reader that stops reading stalls only its own
 *   connection (the flood's writer is held back, another connection still works);
 * - host compat: a workspace's real supervisor (`sup.forward.*` over its socket), the shared
 *   cases again, and a supervisor killed -9 leaves no listener.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serveChannel } from "../guest/server.ts";
import { channelPair } from "../src/protocol/channels.ts";
import { Connection } from "../src/protocol/connection.ts";
import { PortForwards } from "../src/supervisor/forward.ts";
import { blob } from "./fixtures/forward-server.ts";
import * as cases from "./forward-cases.ts";
import { ensureBuilt, freshHome, pyro } from "./helpers.ts";

/** Two free loopback ports (bound, then released) for the fixture servers. */
async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () =>
    Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }),
  );
  const ports = servers.map((s) => s.port);
  for (const s of servers) s.stop(true);
  return ports;
}

/** test/fixtures/forward-server.ts on this host; resolves once it listens. */
async function startServers(): Promise<{ http: number; echo: number; dead: number; stop(): void }> {
  const [http, echo, dead] = (await freePorts(3)) as [number, number, number];
  const proc = Bun.spawn(
    [process.execPath, join(import.meta.dir, "fixtures", "forward-server.ts"), `${http}`, `${echo}`],
    {
      stdout: "pipe",
      stderr: "inherit",
    },
  );
  const reader = proc.stdout.getReader();
  const first = await reader.read();
  expect(new TextDecoder().decode(first.value)).toContain("listening");
  return { http, echo, dead, stop: () => proc.kill(9) };
}

let servers: Awaited<ReturnType<typeof startServers>>;
beforeAll(async () => {
  servers = await startServers();
});
afterAll(() => servers?.stop());

describe("published ports in process (PortForwards over the agent dispatcher)", () => {
  let root = "";
  let conn: Connection;
  let forwards: PortForwards;
  const h: cases.ForwardHarness = {
    open: (g, hp) => forwards.open(g, hp),
    close: async (hp) => forwards.close(hp),
    list: async () => forwards.list(),
  };
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "pyro-forward-"));
    const [agentSide, hostSide] = channelPair();
    serveChannel({ root, guest: false, baseEnv: {} }, agentSide);
    conn = new Connection(hostSide);
    forwards = new PortForwards({ open: (req) => conn.open(req) });
  });
  afterAll(() => {
    forwards.closeAll();
    conn.close();
    rmSync(root, { recursive: true, force: true });
  });

  test(
    "a greeting, 5 MiB byte for byte and 20 concurrent connections",
    () => cases.fetchesThrough(h, servers.http),
    60_000,
  );
  test("5 MiB echoed back, half-closes both ways", () => cases.echoesBothWays(h, servers.echo), 60_000);
  test("after close the port refuses; a refusing guest port closes the host connection", () =>
    cases.closesAndRefuses(h, servers.http, servers.dead));
  test("a taken host port is PORT_IN_USE with nothing left open", () => cases.portInUse(h, servers.http));
  test("bad ports are INVALID_INPUT", async () => {
    const before = forwards.list();
    await expect(forwards.open(0)).rejects.toMatchObject({ code: "INVALID_INPUT" });
    await expect(forwards.open(70000)).rejects.toMatchObject({ code: "INVALID_INPUT" });
    await expect(forwards.open(80, -1)).rejects.toMatchObject({ code: "INVALID_INPUT" });
    expect(forwards.list()).toEqual(before);
  });

  test("a reader that stops reading holds back its own writer only; nothing is lost", async () => {
    const TOTAL = 64 * 1024 * 1024;
    const data = blob(TOTAL);
    let written = 0;
    const flood = net.createServer((s) => {
      s.on("error", () => {});
      const push = () => {
        while (written < TOTAL) {
          const part = data.subarray(written, written + 65536);
          written += part.byteLength;
          if (!s.write(part)) return s.once("drain", push);
        }
        s.end();
      };
      push();
    });
    await new Promise<void>((res) => flood.listen({ host: "127.0.0.1", port: 0 }, () => res()));
    const floodPort = (flood.address() as net.AddressInfo).port;
    const f = await forwards.open(floodPort);
    const parts: Buffer[] = [];
    let stalled: net.Socket | undefined;
    const done = new Promise<void>((res) => {
      const s = net.connect({ host: "127.0.0.1", port: f.host_port });
      s.pause(); // read nothing yet
      s.on("data", (d: Buffer) => parts.push(d));
      s.on("close", () => res());
      stalled = s;
    });
    // the writer gets ahead by what the kernel buffers and one window, then stops
    let last = -1;
    for (let i = 0; i < 100 && written !== last; i++) {
      last = written;
      await Bun.sleep(200);
    }
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThan(TOTAL / 2);
    // meanwhile another connection on the same agent channel is not held up
    const e = await forwards.open(servers.echo);
    const echoed = await cases.exchange(e.host_port, blob(1024 * 1024));
    expect(echoed.bytes.byteLength).toBe(1024 * 1024);
    expect(written).toBeLessThan(TOTAL / 2);
    // reading again drains everything, in order
    stalled?.resume();
    await done;
    const got = Buffer.concat(parts);
    expect(got.byteLength).toBe(TOTAL);
    expect(Buffer.compare(got, data)).toBe(0);
    forwards.close(f.host_port);
    forwards.close(e.host_port);
    flood.close();
  }, 120_000);
});

describe("published ports of a host-compat workspace (its supervisor, sup.forward.*)", () => {
  let home = "";
  let ws = "";
  const env = { PYRO_BACKEND: "host" };
  const h = cases.supervisorHarness(() => ({ home, ws }));
  beforeAll(async () => {
    await ensureBuilt();
    home = freshHome();
    const c = await pyro(["workspace", "create", "--allow-host-compat", "--name", "forwards", "--json"], {
      home,
      env,
    });
    expect(c.code).toBe(0);
    ws = c.json.workspace_id;
  }, 180_000);
  afterAll(async () => {
    if (ws) await pyro(["workspace", "delete", ws], { home, env });
  });

  test(
    "a greeting, 5 MiB byte for byte and 20 concurrent connections",
    () => cases.fetchesThrough(h, servers.http),
    60_000,
  );
  test("5 MiB echoed back, half-closes both ways", () => cases.echoesBothWays(h, servers.echo), 60_000);
  test("after close the port refuses; a refusing port closes the host connection", () =>
    cases.closesAndRefuses(h, servers.http, servers.dead));
  test("a taken host port is PORT_IN_USE with nothing left open", () => cases.portInUse(h, servers.http));

  test(
    "kill -9 of the supervisor leaves no listener",
    () =>
      cases.supervisorKillLeavesNoListener(h, servers.http, home, ws, (args) => pyro(args, { home, env })),
    60_000,
  );
});
