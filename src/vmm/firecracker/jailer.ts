/**
 * Optional: run Firecracker under its jailer (Firecracker docs/jailer.md) when
 * PYRO_FIRECRACKER_JAILER names the jailer binary. The jailer pivots into
 * `<chroot-base>/<exec-file-name>/<id>/root`, drops to uid:gid and execs Firecracker there,
 * so every file Firecracker opens must be inside that root and every path in the config is
 * a path inside the jail. Pure planning here; index.ts does the linking and spawning.
 */
import { basename, join } from "node:path";

export interface JailerSettings {
  jailerBin: string;
  uid: number;
  gid: number;
}

/**
 * Jailer settings from the environment, or null when the jailer is not configured.
 * PYRO_FIRECRACKER_UID/GID pick the unprivileged ids Firecracker runs as; by default the
 * caller's own ids (the jailer itself must run as root).
 */
export function jailerSettings(
  env: Record<string, string | undefined>,
  self: { uid: number; gid: number },
): JailerSettings | null {
  const jailerBin = env.PYRO_FIRECRACKER_JAILER;
  if (!jailerBin) return null;
  const id = (name: string, fallback: number) => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`${name} must be a numeric id, got ${JSON.stringify(raw)}`);
    return n;
  };
  return { jailerBin, uid: id("PYRO_FIRECRACKER_UID", self.uid), gid: id("PYRO_FIRECRACKER_GID", self.gid) };
}

/** The jailer accepts ids of alphanumerics and hyphens, at most 64 characters. */
export function jailId(workspaceId: string): string {
  const id = workspaceId.replace(/[^A-Za-z0-9-]/g, "-").slice(0, 64);
  return id || "pyro";
}

/** Where things live: `root` on the host is `/` for the jailed Firecracker. */
export interface JailLayout {
  id: string;
  chrootBaseDir: string;
  /** `<chroot-base>/<exec-file-name>/<id>`: removed after the VM exits. */
  instanceDir: string;
  root: string;
  /** Paths as the jailed Firecracker sees them. */
  inside: {
    kernel: string;
    rootfs: string;
    dataDisk: string;
    config: string;
    apiSock: string;
    vsock: string;
    /** A snapshot (pause) is written here and moved out; a restore links it back in. */
    snapshotState: string;
    snapshotMem: string;
  };
}

export function jailLayout(runDir: string, firecrackerBin: string, workspaceId: string): JailLayout {
  const id = jailId(workspaceId);
  const chrootBaseDir = join(runDir, "jail");
  const instanceDir = join(chrootBaseDir, basename(firecrackerBin), id);
  return {
    id,
    chrootBaseDir,
    instanceDir,
    root: join(instanceDir, "root"),
    inside: {
      kernel: "/vmlinux",
      rootfs: "/rootfs.ext4",
      dataDisk: "/data.ext4",
      config: "/fc.json",
      apiSock: "/fc.sock",
      vsock: "/vsock.sock",
      snapshotState: "/snapshot.state",
      snapshotMem: "/snapshot.mem",
    },
  };
}

/** Host path of a path inside the jail. */
export function hostPath(layout: JailLayout, inside: string): string {
  return join(layout.root, inside);
}

/**
 * The jailer's argv; everything after `--` goes to Firecracker (the jailer adds `--id`).
 * No --daemonize (we keep the pid and stdio) and no --new-pid-ns (so the pid we hold is
 * Firecracker's own).
 */
export function jailerArgv(
  s: JailerSettings,
  layout: JailLayout,
  firecrackerBin: string,
  fcArgs: string[],
): string[] {
  return [
    s.jailerBin,
    "--id",
    layout.id,
    "--exec-file",
    firecrackerBin,
    "--uid",
    String(s.uid),
    "--gid",
    String(s.gid),
    "--chroot-base-dir",
    layout.chrootBaseDir,
    "--",
    ...fcArgs,
  ];
}
