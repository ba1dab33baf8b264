/**
 * Where the host finds the guest agent: the names both sides must agree on, defined once.
 * QEMU exposes the agent channel as a virtio-serial port with this name (the guest finds it
 * in sysfs); Firecracker as a vsock port the guest agent listens on.
 */
export const AGENT_PORT_NAME = "pyro.agent";
export const AGENT_VSOCK_PORT = 1024;
