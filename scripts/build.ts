/**
 * Compile the two executables: dist/pyro-agent (guest) first, then dist/pyro (host CLI + MCP
 * + supervisor) with that agent embedded (zstd-compressed, as a file asset, with its sha256
 * and size: src/vmm/embedded-agent.ts is replaced at build time), so dist/pyro alone is the
 * whole product. dist/pyro-agent stays for tests and PYRO_AGENT_PATH. Version baked in from
 * package.json; bunfig/dotenv autoload off so a stray config in the user's directory never
 * changes pyro's behaviour.
 * Skips work when the inputs' hash matches the last build (dist/.build-hash).
 */
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dir, "..");
const dist = join(root, "dist");

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (!p.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

function inputsHash(): string {
  const h = createHash("sha256");
  const files = [
    ...walk(join(root, "src")),
    ...walk(join(root, "guest")),
    ...walk(join(root, "rootfs")),
    join(root, "package.json"),
    join(root, "scripts", "build.ts"),
    join(root, "bun.lock"),
  ]
    .filter(existsSync)
    .sort();
  for (const f of files) {
    h.update(relative(root, f));
    h.update(readFileSync(f));
  }
  h.update(Bun.version);
  return h.digest("hex");
}

const force = process.argv.includes("--force");
const hash = inputsHash();
const stamp = join(dist, ".build-hash");
if (
  !force &&
  existsSync(stamp) &&
  readFileSync(stamp, "utf8") === hash &&
  existsSync(join(dist, "pyro")) &&
  existsSync(join(dist, "pyro-agent"))
) {
  console.error("build: dist/ is up to date");
  process.exit(0);
}
mkdirSync(dist, { recursive: true });
// temp outputs of builds that were killed (their pid is gone): ~100 MB each
for (const name of readdirSync(dist)) {
  const m = /^\..+\.tmp-(\d+)$/.exec(name);
  if (!m) continue;
  try {
    process.kill(Number(m[1]), 0);
  } catch {
    rmSync(join(dist, name), { force: true });
  }
}

/**
 * Each executable is written beside its final name and renamed over it: a process spawning
 * dist/pyro while another build writes it in place got ETXTBSY (tests of parallel sessions
 * rebuild dist/ all the time); a rename leaves running copies and spawners a whole file.
 */
async function compile(entry: string, outfile: string, plugins: Bun.BunPlugin[] = []): Promise<void> {
  const started = performance.now();
  const tmp = join(dist, `.${outfile}.tmp-${process.pid}`);
  const result = await Bun.build({
    entrypoints: [join(root, entry)],
    compile: { outfile: tmp, autoloadBunfig: false, autoloadDotenv: false },
    minify: { syntax: true, whitespace: true },
    sourcemap: "none",
    // Precompiled bytecode: the CLI starts without parsing its bundle (start time is per call).
    bytecode: true,
    plugins,
  } as Parameters<typeof Bun.build>[0]);
  if (!result.success) {
    for (const log of result.logs) console.error(log);
    rmSync(tmp, { force: true });
    throw new Error(`build of ${entry} failed`);
  }
  renameSync(tmp, join(dist, outfile));
  console.error(
    `build: ${outfile} (${Math.round(statSync(join(dist, outfile)).size / 2 ** 20)} MB) in ${Math.round(performance.now() - started)} ms`,
  );
}

await compile("guest/main.ts", "pyro-agent");
const agent = new Uint8Array(readFileSync(join(dist, "pyro-agent")));
const packed = join(dist, "pyro-agent.zst");
writeFileSync(`${packed}.tmp-${process.pid}`, Bun.zstdCompressSync(agent, { level: 3 }));
renameSync(`${packed}.tmp-${process.pid}`, packed);
const embedded = `import path from ${JSON.stringify(packed)} with { type: "file" };
export default { path, sha256: ${JSON.stringify(new Bun.CryptoHasher("sha256").update(agent).digest("hex"))}, size: ${agent.byteLength} };
`;
await compile("src/main.ts", "pyro", [
  {
    name: "embed-agent",
    setup(build) {
      build.onLoad({ filter: /[\\/]src[\\/]vmm[\\/]embedded-agent\.ts$/ }, () => ({
        loader: "ts",
        contents: embedded,
      }));
    },
  },
]);
writeFileSync(stamp, hash);
