/**
 * Custom environments from OCI images (`pyro env create NAME --from-image | --from-archive`),
 * against a docker-registry on this machine and fixture images built here from busybox
 * (test/image-fixture.ts): real boots of the imported image, a docker save archive, bad
 * input with its codes and nothing left behind, containment of hostile layers, and the life
 * cycle (list, inspect, doctor, delete refused while a workspace uses it).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { needs } from "./capabilities.ts";
import { guestHome } from "./guest-env.ts";
import { pyro } from "./helpers.ts";
import {
  FIXTURE_ENV,
  FIXTURE_WORKDIR,
  file,
  fixtureSpec,
  hardlink,
  type ImageSpec,
  OS_RELEASE,
  skopeoPush,
  symlink,
  tarBytes,
  writeDockerSave,
  writeOciLayout,
} from "./image-fixture.ts";
import { startRegistry, type TestRegistry } from "./registry.ts";

needs("guest", "docker-registry", "skopeo", "busybox").describe(
  "real guest: environments from OCI images",
  () => {
    let home = "";
    let work = "";
    let cache = "";
    let registry: TestRegistry | null = null;
    let spec: ImageSpec;
    const fixtureRef = () => `${registry?.host}/fixture/busybox:1`;
    /** `pyro ARGS --json` (before a `--`, so a command's argv stays untouched) */
    const run = (args: string[]) => {
      const dash = args.indexOf("--");
      const argv = dash < 0 ? [...args, "--json"] : [...args.slice(0, dash), "--json", ...args.slice(dash)];
      return pyro(argv, { home, env: { PYRO_BUILD_CACHE: cache } });
    };

    beforeAll(async () => {
      const base = await guestHome();
      work = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "env-image-"));
      home = join(work, "home");
      cache = join(work, "cache"); // own layer cache: the first import really downloads
      // debian:12 is installed only to lend its kernel to custom environments
      cpSync(join(base, "environments"), join(home, "environments"), { recursive: true });
      registry = await startRegistry();
      spec = await fixtureSpec();
      writeOciLayout(join(work, "layout"), spec);
      await skopeoPush(join(work, "layout"), fixtureRef());
    }, 1_800_000);
    afterAll(async () => {
      await registry?.stop();
    });

    /** Nothing of a failed create is visible: no environment, no staging trees. */
    async function nothingLeft(name: string): Promise<void> {
      const list = await run(["env", "list"]);
      expect(list.json.environments.some((e: any) => e.name === name)).toBe(false);
      expect(existsSync(join(home, "environments", name))).toBe(false);
      const staging = join(cache, "staging");
      const left = existsSync(staging) ? readdirSync(staging).filter((n) => n.startsWith(".image-")) : [];
      expect(left).toEqual([]);
    }

    test("real guest: env create --from-image boots the image: os-release, whiteout, opaque dir, links, WorkingDir and Env", async () => {
      const created = await run(["env", "create", "fixture", "--from-image", fixtureRef()]);
      expect(created.code).toBe(0);
      expect(created.json.manifest.custom).toBe(true);
      expect(created.json.manifest.source).toMatchObject({ kind: "image", ref: fixtureRef() });
      expect(created.json.manifest.image).toMatchObject({ working_dir: FIXTURE_WORKDIR, cmd: ["/bin/sh"] });
      // layers went to the layer cache by digest
      expect(readdirSync(join(cache, "layers")).filter((n) => /^sha256-[0-9a-f]{64}$/.test(n)).length).toBe(
        2,
      );

      const listed = (await run(["env", "list"])).json.environments.find((e: any) => e.name === "fixture");
      expect(listed).toMatchObject({ installed: true, custom: true, source: fixtureRef() });
      const inspected = await run(["env", "inspect", "fixture"]);
      expect(inspected.json).toMatchObject({ installed: true, verified: true, recipe: null });

      const os = await run(["run", "fixture", "--", "cat", "/etc/os-release"]);
      expect(os.json).toMatchObject({ exit_code: 0, execution_mode: "guest", stdout: OS_RELEASE });

      // One boot for the rest. Each absence check is preceded by its presence twin.
      const script = [
        "pwd",
        'echo "greeting=$GREETING path=$PATH"',
        "test -e /etc/os-release && echo os-release-present",
        "test -e /etc/doomed || echo doomed-gone",
        "ls /opt/old | tr '\\n' ' '; echo",
        'echo "inodes $(stat -c %i /data/file) $(stat -c %i /data/file-link) $(stat -c %i /app/hl)"',
        "echo link=$(readlink /etc/os-link)",
      ].join("; ");
      const r = await run(["run", "fixture", "--", "sh", "-c", script]);
      expect(r.json.exit_code).toBe(0);
      const lines = r.json.stdout.trim().split("\n");
      expect(lines[0]).toBe(FIXTURE_WORKDIR);
      expect(lines[1]).toBe(`greeting=${FIXTURE_ENV.GREETING} path=${FIXTURE_ENV.PATH}`);
      expect(lines[2]).toBe("os-release-present");
      expect(lines[3]).toBe("doomed-gone");
      expect(lines[4].trim()).toBe("new"); // a and b were hidden by the opaque marker
      const [, a, b, c] = lines[5].split(" ");
      expect(a).toBe(b); // hard link within layer 1
      expect(c).toBe(a); // hard link from layer 2 to a file of layer 1
      expect(lines[6]).toBe("link=/etc/os-release"); // absolute symlink stored as is
    }, 600_000);

    test("real guest: a docker save archive imports without a registry and boots", async () => {
      const tar = join(work, "save.tar");
      await writeDockerSave(tar, spec);
      const created = await run(["env", "create", "saved", "--from-archive", tar]);
      expect(created.code).toBe(0);
      expect(created.json.manifest.source.kind).toBe("archive");
      const r = await run(["run", "saved", "--", "cat", "/etc/os-release"]);
      expect(r.json).toMatchObject({ exit_code: 0, execution_mode: "guest", stdout: OS_RELEASE });
      expect((await run(["env", "delete", "saved"])).json).toEqual({ name: "saved", removed: 1 });
    }, 600_000);

    test("real guest: env delete refuses while a workspace uses the environment; workspace exec keeps the image defaults", async () => {
      const ws = await run(["workspace", "create", "fixture", "--name", "img-user"]);
      expect(ws.code).toBe(0);
      try {
        const exec = await run(["workspace", "exec", "img-user", "--", "sh", "-c", 'pwd; echo "$GREETING"']);
        expect(exec.json.stdout).toBe(`${FIXTURE_WORKDIR}\n${FIXTURE_ENV.GREETING}\n`);
        const busy = await run(["env", "delete", "fixture"]);
        expect(busy.json.code).toBe("WORKSPACE_BUSY");
        expect(busy.json.details.workspaces).toEqual([ws.json.workspace_id]);
        const doctor = await run(["doctor", "--environment", "fixture"]);
        const check = doctor.json.checks.find((c: any) => c.name === "env fixture");
        expect(check).toMatchObject({ ok: true });
      } finally {
        await run(["workspace", "delete", "img-user"]);
      }
      expect((await run(["env", "delete", "fixture"])).json).toEqual({ name: "fixture", removed: 1 });
      await nothingLeft("fixture");
      expect((await run(["env", "delete", "fixture"])).json.code).toBe("ENVIRONMENT_NOT_FOUND");
    }, 600_000);

    test("bad input: unknown image, wrong architecture, corrupt layers, name clash — clear codes, nothing half-installed", async () => {
      const unknown = await run([
        "env",
        "create",
        "nope",
        "--from-image",
        `${registry?.host}/fixture/none:1`,
      ]);
      expect(unknown.json.code).toBe("ENVIRONMENT_NOT_FOUND");
      await nothingLeft("nope");

      writeOciLayout(join(work, "arm"), { ...spec, architecture: "arm64" });
      await skopeoPush(join(work, "arm"), `${registry?.host}/fixture/arm:1`);
      const arm = await run(["env", "create", "arm", "--from-image", `${registry?.host}/fixture/arm:1`]);
      expect(arm.json.code).toBe("INVALID_INPUT");
      expect(arm.json.details).toMatchObject({
        reason: "platform",
        wanted: "linux/amd64",
        found: ["linux/arm64"],
      });
      await nothingLeft("arm");

      // A damaged blob in a local layout: its digest no longer matches.
      writeOciLayout(join(work, "corrupt"), { ...spec, corruptLayer: 1 });
      const corrupt = await run(["env", "create", "corrupt", "--from-archive", join(work, "corrupt")]);
      expect(corrupt.json.code).toBe("ENVIRONMENT_CORRUPT");
      expect(corrupt.json.message).toContain("does not match its digest");
      await nothingLeft("corrupt");

      // A damaged blob in the registry's storage (a layer not cached yet).
      const unique = {
        tar: await tarBytes([file(`unique-${process.pid}`, `${Math.random()}\n`)]),
        compression: "gzip" as const,
      };
      writeOciLayout(join(work, "tamper"), { layers: [spec.layers[0]!, unique] });
      await skopeoPush(join(work, "tamper"), `${registry?.host}/fixture/tamper:1`);
      const manifest = JSON.parse(
        readFileSync(
          join(
            work,
            "tamper",
            "blobs",
            "sha256",
            JSON.parse(readFileSync(join(work, "tamper", "index.json"), "utf8")).manifests[0].digest.slice(7),
          ),
          "utf8",
        ),
      );
      const hex = manifest.layers[1].digest.slice(7);
      const stored = join(registry!.dataDir, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
      const bytes = readFileSync(stored);
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0xff;
      writeFileSync(stored, bytes);
      const tampered = await run([
        "env",
        "create",
        "tamper",
        "--from-image",
        `${registry?.host}/fixture/tamper:1`,
      ]);
      expect(tampered.json.code).toBe("ENVIRONMENT_CORRUPT");
      await nothingLeft("tamper");
      expect(existsSync(join(cache, "layers", `sha256-${hex}`))).toBe(false);

      for (const name of ["debian:12", "debian-12"]) {
        const clash = await run(["env", "create", name, "--from-archive", join(work, "layout")]);
        expect(clash.json.code).toBe("NAME_CONFLICT");
      }
      expect(
        (await run(["env", "list"])).json.environments.find((e: any) => e.name === "debian:12").custom,
      ).toBe(false);
    }, 600_000);

    test("hostile layers: '..' names and hard links refused; symlinks (absolute, pointing out) stay inside the image", async () => {
      const outside = join(work, "outside");
      mkdirSync(outside);
      const hostile = async (name: string, entries: Parameters<typeof tarBytes>[0]) => {
        const layout = join(work, name);
        writeOciLayout(layout, {
          layers: [spec.layers[0]!, { tar: await tarBytes(entries), compression: "none" }],
        });
        return run(["env", "create", name, "--from-archive", layout]);
      };
      const dotdot = await hostile("dotdot", [file(`../../../outside/escaped`, "x")]);
      expect(dotdot.json.code).toBe("INVALID_INPUT");
      expect(dotdot.json.message).toContain("outside the root filesystem");
      await nothingLeft("dotdot");
      const link = await hostile("hardout", [hardlink("stolen", "../../../etc/hostname")]);
      expect(link.json.code).toBe("INVALID_INPUT");
      await nothingLeft("hardout");

      // An absolute symlink to a host directory, then a file written "through" it: resolved
      // inside the image (as the guest sees it), never on the host.
      const through = await hostile("through", [symlink("evil", outside), file("evil/pwned", "inside\n")]);
      expect(through.code).toBe(0);
      expect(readdirSync(outside)).toEqual([]);
      const rootfs = join(through.json.dir, "rootfs.ext4");
      const cat = Bun.spawnSync(["debugfs", "-R", `cat ${outside}/pwned`, rootfs], { stderr: "pipe" });
      expect(cat.stdout.toString()).toBe("inside\n");
      const ln = Bun.spawnSync(["debugfs", "-R", "stat /evil", rootfs], { stderr: "pipe" });
      expect(ln.stdout.toString()).toContain("Type: symlink");
      expect((await run(["env", "delete", "through"])).code).toBe(0);
    }, 600_000);
  },
);
