/**
 * Environment root filesystem: the recipe's cached package tree (debootstrap.ts) plus the
 * agent, the init and a few per-image files, turned into ext4 by `mkfs.ext4 -d` (no mount,
 * no loop device). Changing only the agent re-runs only this step (seconds).
 *
 * The image is attached read-only and shared by every workspace (the agent's attach overlays it with
 * the workspace's own disk), so it has no journal and no reserved blocks.
 */
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import initScript from "../../../rootfs/init/pyro-init" with { type: "text" };
import { PyroError } from "../../protocol/errors.ts";
import type { EnvironmentRecipe } from "../catalog.ts";
import { removeStale, scratchPath } from "./cache.ts";
import { ensureTree } from "./debootstrap.ts";
import { type Progress, run } from "./run.ts";

export const INIT_SCRIPT: string = initScript;
export const AGENT_GUEST_PATH = "/usr/local/bin/pyro-agent";
export const INIT_GUEST_PATH = "/sbin/pyro-init";
export const ROOTFS_LABEL = "pyro-root";

const MIB = 1024 * 1024;
/** Free space left in the image: room for mkfs metadata; sparse, so it costs no host disk. */
export const HEADROOM_MIB = 256;

/** Image size in MiB for a tree of `treeBytes`, rounded up to a whole 64 MiB. */
export function imageSizeMib(treeBytes: number): number {
  return Math.ceil((treeBytes / MIB + HEADROOM_MIB) / 64) * 64;
}

/** Inodes for a tree of `entries` files: generous, since mkfs -d fails when they run out. */
export function imageInodes(entries: number): number {
  return Math.max(16384, Math.ceil((entries * 1.5) / 1024) * 1024);
}

/** Files pyro-init and the agent expect that are not in the package tree. */
export const IMAGE_FILES: Record<string, string> = {
  "etc/hostname": "pyro\n",
  "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
  "etc/resolv.conf": "# written at boot by the pyro agent (sys.attach) from the host's resolver\n",
};

/** Empty directories: the mount points of the attach step (guest/attach.ts) and the workspace. */
export const IMAGE_DIRS = ["workspace", "mnt/data", "mnt/root", "usr/local/bin"];

export async function buildRootfs(opts: {
  recipe: EnvironmentRecipe;
  agentPath: string;
  cacheDir: string;
  outPath: string;
  onProgress?: (line: string) => void;
}): Promise<void> {
  const say: Progress = opts.onProgress ?? (() => {});
  const { recipe } = opts;
  if (!existsSync(opts.agentPath)) {
    throw new PyroError("ENVIRONMENT_BUILD_FAILED", `agent executable not found: ${opts.agentPath}`, {
      hint: "build it first (bun run build) and pass --agent PATH",
    });
  }
  const tree = await ensureTree(recipe, opts.cacheDir, say);

  const stagingRoot = join(opts.cacheDir, "staging");
  await mkdir(stagingRoot, { recursive: true });
  removeStale(stagingRoot);
  const staging = scratchPath(stagingRoot, "stage", recipe.name.replace(/[^A-Za-z0-9.]+/g, "_"));
  await mkdir(dirname(opts.outPath), { recursive: true });
  try {
    say(`rootfs ${recipe.name}: staging`);
    // Hard links: fast and free. Never write into a linked file (that would change the
    // cached tree); replace it (unlink, then create) as placeFile does.
    await run(["cp", "-al", tree, staging], { onProgress: say });
    for (const dir of IMAGE_DIRS) await mkdir(join(staging, dir), { recursive: true });
    for (const [path, text] of Object.entries(IMAGE_FILES)) await placeFile(staging, path, text, 0o644);
    await placeFile(staging, INIT_GUEST_PATH.slice(1), INIT_SCRIPT, 0o755);
    const agentDest = join(staging, AGENT_GUEST_PATH.slice(1));
    await rm(agentDest, { force: true });
    await copyFile(opts.agentPath, agentDest);
    await chmod(agentDest, 0o755);

    await mkfsFromTree(staging, opts.outPath, `rootfs ${recipe.name}`, say);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * The read-only root image of a finished tree: `mkfs.ext4 -d` (no mount, no loop device)
 * into a sparse file sized for the tree, renamed to `outPath` only when complete.
 */
export async function mkfsFromTree(
  tree: string,
  outPath: string,
  what: string,
  say: Progress,
): Promise<void> {
  const tmpImage = `${outPath}.tmp-${process.pid}`;
  try {
    const bytes = Number((await run(["du", "-s", "-B1", tree], { capture: true })).split(/\s/)[0]);
    const entries = Number((await run(["du", "-s", "--inodes", tree], { capture: true })).split(/\s/)[0]);
    const sizeMib = imageSizeMib(bytes);
    say(`${what}: mkfs.ext4 ${sizeMib} MiB (tree ${(bytes / MIB).toFixed(0)} MiB, ${entries} files)`);
    await rm(tmpImage, { force: true });
    await run(["truncate", "-s", `${sizeMib}M`, tmpImage]);
    await run(
      [
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        ROOTFS_LABEL,
        "-O",
        "^has_journal",
        "-m",
        "0",
        "-N",
        String(imageInodes(entries)),
        "-E",
        "root_owner=0:0",
        "-d",
        tree,
        tmpImage,
      ],
      { onProgress: say },
    );
    await rename(tmpImage, outPath);
    say(`${what}: wrote ${outPath}`);
  } finally {
    await rm(tmpImage, { force: true });
  }
}

async function placeFile(root: string, path: string, text: string, mode: number): Promise<void> {
  const dest = join(root, path);
  await mkdir(dirname(dest), { recursive: true });
  await rm(dest, { force: true });
  await writeFile(dest, text, { mode });
  await chmod(dest, mode); // writeFile's mode is filtered by the umask
}
