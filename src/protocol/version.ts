import pkg from "../../package.json" with { type: "json" };

/** Bumped on any incompatible change of frames or messages (see messages.snapshot.json). */
export const PROTOCOL_VERSION = 4;
/** The release version, baked into both executables at build time. */
export const PYRO_VERSION: string = pkg.version;
