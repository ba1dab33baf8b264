export {
  AGENT_PORT_NAME,
  buildQemuArgv,
  type QemuAccelerator,
  type QemuArgvOptions,
  qemuKernelArgs,
  qemuOptValue,
  USER_NET,
} from "./argv.ts";
export { type QemuBackendOptions, qemuBackend, qemuRunPaths } from "./backend.ts";
export { findQemu, parseQemuVersion, qemuVersion, requireQemu } from "./binary.ts";
export { connectQmp, QmpClient, type QmpEvent, type QmpStatus } from "./qmp.ts";
