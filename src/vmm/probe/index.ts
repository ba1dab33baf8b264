export { cachedResult, type ProbeKey, type ProbeResult } from "./cache.ts";
export { judgeProbe, type ProbeObservation, type ProbeVerdict } from "./judge.ts";
export { type KvmProbeOptions, type KvmProbeReport, kvmDeviceProblem, probeArgv, probeKvm } from "./kvm.ts";
export { hostTscKhz, parseCpuinfoTscKhz } from "./tsc.ts";
