/**
 * Release files: `bun scripts/release.ts [--out DIR] [--env NAME]... [--registry HOST[:PORT]/NS]
 * [--pyro PATH] [--no-build]`.
 *
 * Produces, in DIR (default dist/release/<version>):
 * - `pyro-<version>-linux-x86_64`: the single executable (the agent is embedded), mode 0755;
 * - `<env slug>-<env version>.pyroenv.tar` for each `--env` (default: every installed catalog
 *   environment), written by `pyro env save` (every file verified against its digest first);
 * - `SHA256SUMS` (`sha256sum -c` format) over every file above;
 * - `release.json`: version, files (name, kind, sha256, size, environment), pushes.
 * With `--registry`, each environment is also pushed by `pyro env push NAME <registry>/NAME`
 * (so `PYRO_REGISTRY=<registry> pyro env pull NAME` finds it), with the registry credentials
 * of the environment: PYRO_REGISTRY_USERNAME + PYRO_REGISTRY_PASSWORD, or PYRO_REGISTRY_TOKEN.
 *
 * Invariants: the release is assembled in a scratch directory beside DIR and renamed into place
 * only when every file and checksum is written (an existing DIR is refused, never mixed with
 * new files); pushes happen after that, from the installed environments, and are recorded in
 * release.json. Host commands are argv arrays. Environments are read from PYRO_HOME as usual.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

const root = join(import.meta.dir, "..");
const version = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version;

interface Args {
  out: string;
  envs: string[];
  registry: string | null;
  pyro: string;
  build: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    out: join(root, "dist", "release", version),
    envs: [],
    registry: null,
    pyro: join(root, "dist", "pyro"),
    build: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v as string;
    };
    if (flag === "--out") a.out = resolve(value());
    else if (flag === "--env") a.envs.push(value());
    else if (flag === "--registry") a.registry = value().replace(/\/+$/, "");
    else if (flag === "--pyro") a.pyro = resolve(value());
    else if (flag === "--no-build") a.build = false;
    else usage(`unknown argument ${flag}`);
  }
  return a;
}

function usage(problem: string): never {
  console.error(`release: ${problem}
usage: bun scripts/release.ts [--out DIR] [--env NAME]... [--registry HOST[:PORT]/NS] [--pyro PATH] [--no-build]`);
  process.exit(64);
}

function pyro(bin: string, args: string[]): any {
  const p = Bun.spawnSync([bin, ...args, "--json"], { stdout: "pipe", stderr: "inherit", env: process.env });
  const text = p.stdout.toString();
  if (p.exitCode !== 0) {
    console.error(`release: pyro ${args.join(" ")} failed (exit ${p.exitCode}): ${text.slice(0, 2000)}`);
    process.exit(p.exitCode || 1);
  }
  return JSON.parse(text);
}

async function sha256(path: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) h.update(chunk);
  return h.digest("hex");
}

const slug = (name: string) => name.replace(/[^a-z0-9.-]+/gi, "-");

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (existsSync(a.out)) usage(`${a.out} exists; releases are never overwritten (remove it or pick --out)`);
  if (a.build) {
    const b = Bun.spawnSync([process.execPath, join(root, "scripts", "build.ts")], {
      stdout: "inherit",
      stderr: "inherit",
    });
    if (b.exitCode !== 0) process.exit(b.exitCode || 1);
  }
  if (!existsSync(a.pyro)) usage(`no executable at ${a.pyro} (build it, or pass --pyro)`);
  const envs =
    a.envs.length > 0
      ? a.envs
      : (
          pyro(a.pyro, ["env", "list"]).environments as Array<{
            name: string;
            installed: boolean;
            custom: boolean;
          }>
        )
          .filter((e) => e.installed && !e.custom)
          .map((e) => e.name);

  mkdirSync(dirname(a.out), { recursive: true });
  const scratch = join(dirname(a.out), `.${basename(a.out)}.tmp-${process.pid}`);
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch);
  const files: Array<{
    name: string;
    kind: "executable" | "environment";
    sha256: string;
    size: number;
    environment?: string;
    environment_version?: string;
  }> = [];
  try {
    const exe = `pyro-${version}-linux-x86_64`;
    copyFileSync(a.pyro, join(scratch, exe));
    chmodSync(join(scratch, exe), 0o755);
    files.push({
      name: exe,
      kind: "executable",
      sha256: await sha256(join(scratch, exe)),
      size: statSync(join(scratch, exe)).size,
    });
    for (const env of envs) {
      const inspected = pyro(a.pyro, ["env", "inspect", env]);
      if (!inspected.installed) usage(`environment ${env} is not installed`);
      const envVersion = inspected.manifest.version as string;
      const name = `${slug(env)}-${envVersion}.pyroenv.tar`;
      console.error(`release: saving ${env} (${envVersion})`);
      const saved = pyro(a.pyro, ["env", "save", env, "--output", join(scratch, name)]);
      files.push({
        name,
        kind: "environment",
        sha256: await sha256(join(scratch, name)),
        size: statSync(join(scratch, name)).size,
        environment: env,
        environment_version: saved.version ?? envVersion,
      });
    }
    writeFileSync(join(scratch, "SHA256SUMS"), files.map((f) => `${f.sha256}  ${f.name}\n`).join(""));
    writeFileSync(
      join(scratch, "release.json"),
      `${JSON.stringify({ version, files, pushed: [] }, null, 2)}\n`,
    );
    renameSync(scratch, a.out);
  } catch (err) {
    rmSync(scratch, { recursive: true, force: true });
    throw err;
  }

  const pushed: Array<{ environment: string; ref: string; digest: string }> = [];
  if (a.registry) {
    for (const env of envs) {
      const ref = `${a.registry}/${env}`;
      console.error(`release: pushing ${env} to ${ref}`);
      const r = pyro(a.pyro, ["env", "push", env, ref]);
      pushed.push({ environment: env, ref: r.ref, digest: r.digest });
    }
    writeFileSync(join(a.out, "release.json"), `${JSON.stringify({ version, files, pushed }, null, 2)}\n`);
  }
  console.log(JSON.stringify({ out: a.out, version, files, pushed }, null, 2));
}

await main();
