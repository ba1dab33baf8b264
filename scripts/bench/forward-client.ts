/**
 * The client side of the published-port bench (scripts/bench/forward.ts), the same code on both
 * ends: the bench calls these functions on the host against a published port, and runs this
 * file inside the guest (`BUN_BE_BUN=1 /usr/local/bin/pyro-agent forward-client.ts MODE PORT N`,
 * printing the samples as JSON) against the guest port itself. The servers are
 * test/fixtures/forward-server.ts. Times are milliseconds.
 */
import net from "node:net";

/** `n` round trips of 64 bytes over one connection to the echo server. */
export async function echoRoundTrips(port: number, n: number): Promise<number[]> {
  const s = net.connect({ host: "127.0.0.1", port });
  await new Promise<void>((res, rej) => {
    s.once("connect", () => res());
    s.once("error", rej);
  });
  s.setNoDelay(true);
  const msg = Buffer.alloc(64, 120);
  const out: number[] = [];
  let got = 0;
  let wake: () => void = () => {};
  s.on("data", (d: Buffer) => {
    got += d.byteLength;
    wake();
  });
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const want = got + msg.byteLength;
    const back = new Promise<void>((res) => {
      wake = () => got >= want && res();
    });
    s.write(msg);
    await back;
    out.push(performance.now() - t);
  }
  s.destroy();
  return out;
}

/** Connect, send `request`, half-close, read to the end; the bytes read. */
function exchange(port: number, request: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => {
      s.write(request);
      s.end();
    });
    s.on("data", (d: Buffer) => {
      bytes += d.byteLength;
    });
    s.on("error", reject);
    s.on("close", () => resolve(bytes));
  });
}

/** `n` small HTTP GETs of `/`, each on a fresh connection (connect → last byte). */
export async function freshGets(port: number, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const bytes = await exchange(port, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    out.push(performance.now() - t);
    if (bytes === 0) throw new Error(`no answer from port ${port}`);
  }
  return out;
}

/** `n` downloads of `size` bytes (`/blob?n=size`); each sample the whole transfer. */
export async function downloads(port: number, size: number, n: number): Promise<number[]> {
  const out: number[] = [];
  const req = `GET /blob?n=${size} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
  await exchange(port, req); // the server builds the blob once
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const bytes = await exchange(port, req);
    out.push(performance.now() - t);
    if (bytes < size) throw new Error(`download through port ${port}: ${bytes} of ${size} bytes`);
  }
  return out;
}

if (import.meta.main) {
  const [mode, port, n, size] = process.argv.slice(2);
  const p = Number(port);
  const count = Number(n);
  const samples =
    mode === "rtt"
      ? await echoRoundTrips(p, count)
      : mode === "get"
        ? await freshGets(p, count)
        : await downloads(p, Number(size), count);
  console.log(JSON.stringify(samples));
}
