/**
 * pyro-agent: `pyro-agent serve --guest` inside a microVM (started by /sbin/pyro-init via
 * tini, on the read-only root; the host's sys.attach then attaches the workspace), or `pyro-agent serve --stdio --root DIR --state DIR` as the host-compat backend's
 * child. `--state` holds what the agent keeps outside /workspace (the diff baseline); in a
 * guest it defaults to the workspace data disk's root, outside the overlay.
 */
import { streamChannel } from "../src/protocol/channels.ts";
import { AGENT_VSOCK_PORT as VSOCK_PORT } from "../src/protocol/transport.ts";
import { PYRO_VERSION } from "../src/protocol/version.ts";
import { execGuardPolicy, killAllGroups } from "./exec.ts";
import { type AgentOptions, serveChannel } from "./server.ts";
import { protectAgent, startTaskGuard } from "./system.ts";
import { findVirtioPort, serveVirtioPort } from "./virtio-serial.ts";

const GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** On the workspace's data disk (mounted by sys.attach), outside the overlay and /workspace. */
const GUEST_STATE_DIR = "/run/pyro/data/pyro-state";

function usage(): never {
  process.stderr.write(
    "usage: pyro-agent serve (--guest [--state DIR] | --stdio --root DIR --state DIR)\n       pyro-agent --version\n",
  );
  process.exit(64);
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === "--selftest-pty") {
    const { selftestPty } = await import("./pty.ts");
    process.exit((await selftestPty()) ? 0 : 1);
  }
  if (argv[0] === "--version") {
    process.stdout.write(`pyro-agent ${PYRO_VERSION}\n`);
    return;
  }
  if (argv[0] !== "serve") usage();
  const guest = argv.includes("--guest");
  const rootIdx = argv.indexOf("--root");
  const root = rootIdx >= 0 ? argv[rootIdx + 1] : guest ? "/workspace" : undefined;
  if (!root) usage();
  const stateIdx = argv.indexOf("--state");
  const stateDir = stateIdx >= 0 ? argv[stateIdx + 1] : guest ? GUEST_STATE_DIR : undefined;
  if (stateIdx >= 0 && !stateDir) usage();

  if (guest) {
    for (const p of protectAgent()) console.error(`pyro-agent: self-protection: ${p}`);
    startTaskGuard(execGuardPolicy, (line) => console.error(`pyro-agent: task guard: ${line}`));
    // The agent starts on the read-only root, detached from the workspace disk: sys.attach
    // (guest/attach.ts) mounts it, pivots into the overlay and makes /workspace.
    const opts: AgentOptions = {
      root,
      guest: true,
      baseEnv: { PATH: GUEST_PATH, HOME: "/root", LANG: "C.UTF-8", TERM: "xterm-256color", USER: "root" },
      stateDir,
    };
    // sys.attach's module and libc's stubs, ready now (a VM template is saved with them; its
    // clones then attach without loading them under emulation)
    void import("./attach.ts").then((m) => m.prepareAttach());
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
  // Required in host compat; until every caller passes it, the agent still serves and
  // refuses only baseline.capture and diff.
  if (!stateDir) console.error("pyro-agent: no --state DIR given: baseline and diff are unavailable");
  const opts: AgentOptions = {
    root,
    stateDir,
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

// No top-level await: the executables are compiled to bytecode, which needs it.
void main(process.argv.slice(2));
