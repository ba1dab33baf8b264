/**
 * Published-port cases shared by the in-process tests (test/forward.test.ts: the supervisor's
 * PortForwards over the real agent dispatcher, and a host-compat workspace) and the real guest
 * (test/forward-guest.test.ts). The servers behind the forwards are
 * test/fixtures/forward-server.ts (HTTP + a half-closing echo); `h` opens and closes forwards
 * however the caller reaches the supervisor.
 */
import { expect } from "bun:test";
import { readFileSync } from "node:fs";
import net from "node:net";
import { callWorkspace } from "../src/manager/client.ts";
import { readRecord } from "../src/manager/record.ts";
import { blob, GREETING } from "./fixtures/forward-server.ts";
import { type PyroResult, waitFor } from "./helpers.ts";

export interface PublishedPort {
  guest_port: number;
  host_port: number;
  host: string;
}
export interface ForwardHarness {
  open(guestPort: number, hostPort?: number): Promise<PublishedPort>;
  close(hostPort: number): Promise<boolean>;
  list(): Promise<PublishedPort[]>;
}

/**
 * A harness over a workspace's supervisor (sup.forward.*): `at` names the PYRO_HOME and
 * workspace at call time (a file sets them in its beforeAll).
 */
export function supervisorHarness(at: () => { home: string; ws: string }): ForwardHarness {
  const call = <R>(req: Record<string, unknown>) => {
    const { home, ws } = at();
    return callWorkspace(home, readRecord(home, ws)!, req as never) as Promise<R>;
  };
  return {
    open: (g, hp) =>
      call({ op: "sup.forward.open", guest_port: g, ...(hp === undefined ? {} : { host_port: hp }) }),
    close: async (hp) => (await call<{ closed: boolean }>({ op: "sup.forward.close", host_port: hp })).closed,
    list: async () => (await call<{ forwards: PublishedPort[] }>({ op: "sup.forward.list" })).forwards,
  };
}

const MiB = 1024 * 1024;

/** Whether anything listens on 127.0.0.1:port (from /proc/net/tcp: state 0A = LISTEN). */
export function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .some((l) => {
      const f = l.trim().split(/\s+/);
      return f[1]?.endsWith(`:${hex}`) && f[3] === "0A";
    });
}

/** Connect, send `payload`, half-close, read to the end: what came back and how it ended. */
export function exchange(
  port: number,
  payload: Uint8Array = new Uint8Array(0),
): Promise<{ bytes: Buffer; ending: "end" | "reset" | "refused" }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let connected = false;
    const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => {
      connected = true;
      if (payload.byteLength) s.write(payload);
      s.end();
    });
    s.on("data", (d: Buffer) => parts.push(d));
    let ending: "end" | "reset" | "refused" = "reset";
    s.on("end", () => {
      ending = "end";
    });
    s.on("error", (err: NodeJS.ErrnoException) => {
      if (!connected && err.code === "ECONNREFUSED") ending = "refused";
    });
    s.on("close", () => resolve({ bytes: Buffer.concat(parts), ending }));
  });
}

/** One HTTP/1.0 GET on its own connection: the body. */
export async function get(port: number, path: string): Promise<Buffer> {
  const r = await exchange(
    port,
    new TextEncoder().encode(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`),
  );
  const split = r.bytes.indexOf("\r\n\r\n");
  if (split < 0)
    throw new Error(`no HTTP answer through port ${port} (${r.ending}): ${r.bytes.toString().slice(0, 200)}`);
  expect(r.bytes.subarray(0, 12).toString()).toMatch(/^HTTP\/1\.[01] 200/);
  return r.bytes.subarray(split + 4);
}

const same = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;

/** A greeting, 5 MiB byte for byte, and 20 connections at once through one forward. */
export async function fetchesThrough(h: ForwardHarness, httpPort: number): Promise<void> {
  const p = await h.open(httpPort);
  expect(p.host).toBe("127.0.0.1");
  expect(p.guest_port).toBe(httpPort);
  expect(p.host_port).toBeGreaterThan(0);
  expect(await h.list()).toContainEqual(p);
  expect((await get(p.host_port, "/")).toString()).toBe(GREETING);
  // fetch() as an ordinary client would
  expect(await (await fetch(`http://127.0.0.1:${p.host_port}/`)).text()).toBe(GREETING);

  const big = await get(p.host_port, `/blob?n=${5 * MiB}`);
  expect(big.byteLength).toBe(5 * MiB);
  expect(same(big, blob(5 * MiB))).toBe(true);

  const want = blob(300_000);
  const bodies = await Promise.all(Array.from({ length: 20 }, () => get(p.host_port, "/blob?n=300000")));
  expect(bodies.map((b) => same(b, want))).toEqual(Array(20).fill(true));
  expect(await h.close(p.host_port)).toBe(true);
}

/** 5 MiB up and back through the echo server, ended by a half-close from each side. */
export async function echoesBothWays(h: ForwardHarness, echoPort: number): Promise<void> {
  const p = await h.open(echoPort);
  const sent = blob(5 * MiB);
  const r = await exchange(p.host_port, sent);
  expect(r.ending).toBe("end"); // the guest's FIN arrived as ours, after every byte
  expect(r.bytes.byteLength).toBe(sent.byteLength);
  expect(same(r.bytes, sent)).toBe(true);
  // a bare half-close with nothing sent still ends cleanly
  expect(await exchange(p.host_port)).toEqual({ bytes: Buffer.alloc(0), ending: "end" });
  expect(await h.close(p.host_port)).toBe(true);
}

/**
 * After close the host port refuses (the probe first proves it connects while open), and a
 * guest port nobody listens on closes the host connection at once with nothing sent.
 */
export async function closesAndRefuses(
  h: ForwardHarness,
  httpPort: number,
  deadGuestPort: number,
): Promise<void> {
  const p = await h.open(httpPort);
  expect((await get(p.host_port, "/")).toString()).toBe(GREETING);
  expect(await h.close(p.host_port)).toBe(true);
  expect((await exchange(p.host_port)).ending).toBe("refused");
  expect(await h.list()).not.toContainEqual(p);
  expect(await h.close(p.host_port)).toBe(false);

  const dead = await h.open(deadGuestPort);
  const r = await exchange(dead.host_port, new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
  expect(r.bytes.byteLength).toBe(0);
  expect(r.ending).not.toBe("refused"); // the host side accepted; the guest's refusal closed it
  await h.close(dead.host_port);
}

/** A host port already taken (by another forward, or by anyone) is PORT_IN_USE, nothing left open. */
export async function portInUse(h: ForwardHarness, httpPort: number): Promise<void> {
  const p = await h.open(httpPort);
  const before = await h.list();
  await expect(h.open(httpPort, p.host_port)).rejects.toMatchObject({ code: "PORT_IN_USE" });
  const other = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    await expect(h.open(httpPort, other.port)).rejects.toMatchObject({ code: "PORT_IN_USE" });
  } finally {
    other.stop(true);
  }
  expect(await h.list()).toEqual(before);
  // a chosen free port is used as asked
  await h.close(p.host_port);
  const again = await h.open(httpPort, p.host_port);
  expect(again.host_port).toBe(p.host_port);
  expect((await get(again.host_port, "/")).toString()).toBe(GREETING);
  await h.close(again.host_port);
}

/**
 * kill -9 of the workspace's supervisor (reached through `run` in `home`): the forward's
 * listener goes with it, its port refuses, and the workspace reads stopped.
 */
export async function supervisorKillLeavesNoListener(
  h: ForwardHarness,
  httpPort: number,
  home: string,
  ws: string,
  run: (args: string[]) => Promise<PyroResult>,
): Promise<void> {
  const p = await h.open(httpPort);
  expect(listening(p.host_port)).toBe(true); // the probe sees a live forward
  expect((await get(p.host_port, "/")).toString()).toBe(GREETING);
  const pid = readRecord(home, ws)?.supervisor_pid;
  expect(pid).toBeGreaterThan(0);
  process.kill(pid as number, "SIGKILL");
  expect(await waitFor(() => !listening(p.host_port), 10_000)).toBe(true);
  expect((await exchange(p.host_port)).ending).toBe("refused");
  const st = await run(["workspace", "status", ws, "--json"]);
  expect(st.json.state).toBe("stopped");
}
