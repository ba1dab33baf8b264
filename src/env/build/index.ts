// Public surface of the environment build driver (kernel, package tree, rootfs, data disk).
export { createDataDisk, DATA_DISK_LABEL, DEFAULT_DATA_DISK_MIB } from "./datadisk.ts";
export { DEBIAN_MIRROR, treeCacheKey } from "./debootstrap.ts";
export { buildKernel, KERNEL_FRAGMENT, kernelCacheKey, kernelPath, kernelSourceVersion } from "./kernel.ts";
export { AGENT_GUEST_PATH, buildRootfs, INIT_GUEST_PATH, ROOTFS_LABEL } from "./rootfs.ts";
