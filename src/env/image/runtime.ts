/**
 * What pyro adds to an image's tree so any image boots, with or without a shell or a libc:
 * everything pyro itself runs lives under `/.pyro` and never depends on the image.
 *
 *   /.pyro/bin/busybox, sh -> busybox   pyro's private shell (busybox-static from the host):
 *                                       /sbin/pyro-init runs on it (its `mount` applet stands in
 *                                       when the image has none)
 *   /.pyro/bin/tini                     tini-static from the host (reaps orphans), if installed
 *   /.pyro/bin/pyro-agent               the agent (a glibc-dynamic Bun executable)
 *   /.pyro/lib/                         the host's glibc pieces the agent needs (ld-linux,
 *                                       libc, libpthread, libdl, libm, libutil for bun-pty)
 *   /usr/local/bin/pyro-agent           a wrapper: exec the agent through /.pyro/lib's own
 *                                       ld-linux with --library-path /.pyro/lib, so the image's
 *                                       libc (musl, an old glibc, none) is never involved and
 *                                       nothing leaks into commands (no LD_LIBRARY_PATH)
 *   /sbin/pyro-init                     the catalog's init with `#!/.pyro/bin/sh` and tini at
 *                                       /.pyro/bin/tini; nothing else differs
 * plus the files and mount points every pyro root has (build/rootfs.ts IMAGE_FILES/DIRS).
 * Everything is placed through ScopedTree: a symlink in the image (`/sbin -> usr/sbin`, or
 * a hostile `/sbin -> /etc`) is resolved inside the tree, never on the host.
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { tempName } from "../../protocol/archive/safepath.ts";
import { PyroError } from "../../protocol/errors.ts";
import { renameat, symlinkat, unlinkat } from "../../protocol/openat.ts";
import { AGENT_GUEST_PATH, IMAGE_DIRS, IMAGE_FILES, INIT_GUEST_PATH, INIT_SCRIPT } from "../build/rootfs.ts";
import { readChunks } from "../oci/io.ts";
import type { ScopedTree } from "./apply.ts";

export const PRIVATE_DIR = ".pyro";
export const AGENT_LIBS = [
  "ld-linux-x86-64.so.2",
  "libc.so.6",
  "libpthread.so.0",
  "libdl.so.2",
  "libm.so.6",
  "libutil.so.1",
] as const;
const LIB_DIRS = [
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib64",
  "/usr/lib64",
  "/lib",
  "/usr/lib",
];

export const AGENT_WRAPPER = `#!/.pyro/bin/sh
# pyro-agent through pyro's private glibc (/.pyro/lib); the image's own libc is never used.
exec /.pyro/lib/ld-linux-x86-64.so.2 --library-path /.pyro/lib /.pyro/bin/pyro-agent "$@"
`;

/** Busybox applets pyro-init runs (linked in /.pyro/bin: without /proc mounted, busybox's
 * shell cannot run its own applets by /proc/self/exe, so they must be on PATH). The rest
 * of the boot (data disk, overlay, pivot_root, lo) is the agent's sys.attach, in-process. */
export const INIT_APPLETS = ["mount"] as const;
const INIT_PATH = /^PATH=(\S+)$/m;

/**
 * The catalog's /sbin/pyro-init, made independent of the image: run by pyro's shell, with
 * /.pyro/bin first on its PATH (the agent's commands get their own PATH, not this one),
 * and tini from /.pyro/bin.
 */
export function imageInitScript(base: string = INIT_SCRIPT): string {
  if (!base.startsWith("#!/bin/sh\n") || !base.includes("/usr/bin/tini") || !INIT_PATH.test(base))
    throw new PyroError("INTERNAL", "rootfs/init/pyro-init changed: update src/env/image/runtime.ts");
  return `#!/.pyro/bin/sh\n${base.slice("#!/bin/sh\n".length)}`
    .replace(INIT_PATH, (_, path: string) => `PATH=/.pyro/bin:${path}`)
    .replaceAll("/usr/bin/tini", "/.pyro/bin/tini");
}

/** Does the ELF file at `path` have no program interpreter (statically linked)? */
export function isStaticElf(path: string): boolean {
  const b = readFileSync(path).subarray(0, 64 * 1024);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false; // ELF64 only
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    const off = phoff + i * phentsize;
    if (off + 4 > b.length) return false;
    if (b.readUInt32LE(off) === 3) return false; // PT_INTERP
  }
  return true;
}

function hostBusybox(env: Record<string, string | undefined>): string {
  const candidates = [
    env.PYRO_BUSYBOX,
    "/bin/busybox",
    "/usr/bin/busybox",
    Bun.which("busybox") ?? undefined,
  ];
  for (const c of candidates) if (c && existsSync(c) && isStaticElf(c)) return c;
  throw new PyroError(
    "ENVIRONMENT_BUILD_FAILED",
    "a statically linked busybox is needed to boot images (pyro's private shell)",
    {
      hint: "install Debian's busybox-static package (or set PYRO_BUSYBOX to a static busybox)",
    },
  );
}

function hostLib(name: string): string {
  for (const dir of LIB_DIRS) {
    const p = `${dir}/${name}`;
    if (existsSync(p)) return realpathSync(p);
  }
  throw new PyroError("ENVIRONMENT_BUILD_FAILED", `host library ${name} (needed by pyro-agent) not found`, {
    details: { searched: LIB_DIRS },
  });
}

/** Add pyro's init, agent and private runtime to an image tree (see the header). */
export async function injectRuntime(
  tree: ScopedTree,
  opts: { agentPath: string; env: Record<string, string | undefined>; say: (line: string) => void },
): Promise<void> {
  const busybox = hostBusybox(opts.env);
  const tini = [opts.env.PYRO_TINI_STATIC, "/usr/bin/tini-static"].find(
    (p) => p && existsSync(p) && isStaticElf(p),
  );
  if (!tini) opts.say("no tini-static on this host: the agent runs as PID 1 and orphans are not reaped");
  const file = async (path: string, body: string | { from: string }, mode: number) => {
    const at = tree.parentOf(path.split("/"), true, `pyro file /${path}`)!;
    const chunks = typeof body === "string" ? new TextEncoder().encode(body) : readChunks(body.from);
    await tree.writeFile(at.real, at.name, chunks, { mode });
  };
  for (const dir of [
    ...IMAGE_DIRS,
    "proc",
    "sys",
    "dev",
    "run",
    "tmp",
    `${PRIVATE_DIR}/bin`,
    `${PRIVATE_DIR}/lib`,
  ])
    tree.resolveDir(dir.split("/"), true, `pyro directory /${dir}`);
  for (const [path, text] of Object.entries(IMAGE_FILES)) await file(path, text, 0o644);
  await file(`${PRIVATE_DIR}/bin/busybox`, { from: busybox }, 0o755);
  for (const applet of ["sh", ...INIT_APPLETS]) link(tree, `${PRIVATE_DIR}/bin`, applet, "busybox");
  if (tini) await file(`${PRIVATE_DIR}/bin/tini`, { from: tini }, 0o755);
  for (const lib of AGENT_LIBS) await file(`${PRIVATE_DIR}/lib/${lib}`, { from: hostLib(lib) }, 0o755);
  await file(`${PRIVATE_DIR}/bin/pyro-agent`, { from: opts.agentPath }, 0o755);
  await file(AGENT_GUEST_PATH.slice(1), AGENT_WRAPPER, 0o755);
  await file(INIT_GUEST_PATH.slice(1), imageInitScript(), 0o755);
}

/** A symlink `name` -> `target` in the real directory `dir` (replacing what is there). */
function link(tree: ScopedTree, dir: string, name: string, target: string): void {
  const real = tree.resolveDir(dir.split("/"), true, `/${dir}`)!;
  const fd = tree.fds.dir(real, false, `/${dir}`);
  tree.clearDir(real, name);
  const tmp = tempName();
  symlinkat(target, fd, tmp);
  try {
    renameat(fd, tmp, fd, name);
  } catch (err) {
    unlinkat(fd, tmp);
    throw err;
  }
}
