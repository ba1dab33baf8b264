/**
 * pyro-agent: `pyro-agent serve --guest` inside a microVM (started by /sbin/pyro-init via
 * tini), or `pyro-agent serve --stdio --root DIR` as the host-compat backend's child.
 */
import { mkdirSync } from "node:fs";
import { streamChannel } from "../src/protocol/channels.ts";
import { PYRO_VERSION } from "../src/protocol/version.ts";
import { killAllGroups } from "./exec.ts";
import { type AgentOptions, serveChannel } from "./server.ts";
import { findVirtioPort, serveVirtioPort } from "./virtio-serial.ts";

const GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const VSOCK_PORT = 1024;

function usage(): never {
  process.stderr.write(
    "usage: pyro-agent serve (--guest | --stdio --root DIR)\n       pyro-agent --version\n",
  );
  process.exit(64);
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === "--version") {
    process.stdout.write(`pyro-agent ${PYRO_VERSION}\n`);
    return;
  }
  if (argv[0] !== "serve") usage();
  const guest = argv.includes("--guest");
  const rootIdx = argv.indexOf("--root");
  const root = rootIdx >= 0 ? argv[rootIdx + 1] : guest ? "/workspace" : undefined;
  if (!root) usage();

  if (guest) {
    mkdirSync(root, { recursive: true });
    const opts: AgentOptions = {
      root,
      guest: true,
      baseEnv: { PATH: GUEST_PATH, HOME: "/root", LANG: "C.UTF-8", TERM: "xterm-256color", USER: "root" },
    };
    const port = findVirtioPort();
    if (port) {
      console.error(`pyro-agent ${PYRO_VERSION}: serving on ${port}`);
      await serveVirtioPort(port, (ch) => serveChannel(opts, ch));
    } else {
      const { listenVsock } = await import("./vsock.ts");
      console.error(`pyro-agent ${PYRO_VERSION}: serving on vsock port ${VSOCK_PORT}`);
      listenVsock(VSOCK_PORT, (ch) => serveChannel(opts, ch));
    }
    return;
  }

  if (!argv.includes("--stdio")) usage();
  const opts: AgentOptions = {
    root,
    guest: false,
    baseEnv: {
      PATH: process.env.PATH ?? GUEST_PATH,
      HOME: root,
      LANG: process.env.LANG ?? "C.UTF-8",
      TERM: "xterm-256color",
    },
    onShutdown: () => exitHost(),
  };
  // No VM boundary in host compat: whatever we started must die with us.
  const exitHost = () => {
    killAllGroups();
    process.exit(0);
  };
  process.on("SIGTERM", exitHost);
  process.on("SIGHUP", exitHost);
  const stdout = Bun.stdout.writer();
  const channel = streamChannel(Bun.stdin.stream() as ReadableStream<Uint8Array>, stdout);
  const conn = serveChannel(opts, channel);
  // The supervisor holds our stdin; when it goes away, so do we.
  conn.onClose(() => exitHost());
}

await main(process.argv.slice(2));
