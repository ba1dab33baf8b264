/**
 * The pyro-agent embedded in the compiled pyro executable. In the repository this module
 * says "none" (source runs start the agent from guest/main.ts); scripts/build.ts replaces
 * its contents while compiling dist/pyro with the zstd-compressed dist/pyro-agent imported
 * as an embedded file, plus the uncompressed agent's sha256 and size, known at build time.
 */
export interface EmbeddedAgent {
  /** Path of the embedded zstd file inside the executable (/$bunfs/...; read with readFileSync). */
  path: string;
  /** sha256 (hex) of the uncompressed agent. */
  sha256: string;
  /** Size in bytes of the uncompressed agent. */
  size: number;
}

const embedded: EmbeddedAgent | null = null;
export default embedded;
