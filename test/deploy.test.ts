/**
 * The example deployments in deploy/ (docs/scale-out.md). What is checked:
 * - Kubernetes: each manifest parses (Bun's YAML parser) and passes the OpenAPI-schema
 *   validation of its kind from `kubernetes-models` (types, required fields, enums);
 * - Nomad: the job file parses with HashiCorp's HCL parser (`@cdktf/hcl2json`, HCL2 compiled
 *   to WebAssembly);
 * - the fields pyro relies on agree with each other and with pyro (Service → pod labels and
 *   port name, token file mode and path, the stop grace), and each file's pyro command line,
 *   with the platform's variables filled in, starts this dist/pyro and serves MCP over HTTP.
 * Not proved here: that an API server or a Nomad agent accepts them (admission, versions,
 * unknown fields, which kubernetes-models does not reject), that the image exists, or that
 * the nodes have /dev/kvm.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Service } from "kubernetes-models/v1/Service";
import { STOP_GRACE_MS } from "../src/mcp/http.ts";
import { ensureBuilt, freshHome, REPO } from "./helpers.ts";
import { connectHttp, serveHttp, stopServer } from "./http-server.ts";

// Loaded by a name TypeScript does not resolve: the package's typings pull in lib.dom, whose
// stream types would replace Bun's in every file of the project.
const HCL2JSON: string = "@cdktf/hcl2json";
const { parse: parseHcl } = (await import(HCL2JSON)) as { parse(name: string, text: string): Promise<any> };

const TOKEN = "t".repeat(43);
let tmp: string;

beforeAll(async () => {
  await ensureBuilt();
  tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP ?? "/tmp", "deploy-"));
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function yaml(name: string): Promise<any> {
  return Bun.YAML.parse(await Bun.file(join(REPO, "deploy", "kubernetes", name)).text());
}

/**
 * Run a deployment's `pyro ...` argv (program replaced by dist/pyro) and prove it serves MCP
 * with the token, then stop it with SIGTERM as the platform would.
 */
async function servesMcp(argv: string[]): Promise<void> {
  const served = await serveHttp(freshHome(), argv);
  try {
    const client = await connectHttp(served.url, TOKEN);
    expect((await client.listTools()).tools.map((t) => t.name)).toContain("workspace_create");
    await client.close();
  } finally {
    expect(await stopServer(served)).toBe(0);
  }
}

/** A token file as the platform would mount it (mode given), in its own directory. */
function tokenAt(path: string, mode: number): string {
  const file = join(tmp, path);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${TOKEN}\n`, { mode });
  return file;
}

describe("deploy/kubernetes", () => {
  test("the DaemonSet and the Service pass their kinds' schema validation", async () => {
    const ds = new DaemonSet(await yaml("daemonset.yaml"));
    const svc = new Service(await yaml("service.yaml"));
    expect(() => ds.validate()).not.toThrow();
    expect(() => svc.validate()).not.toThrow();
    // the probe: the same validation refuses a wrong type
    const bad = await yaml("service.yaml");
    bad.spec.ports[0].port = "eighty";
    expect(() => new Service(bad).validate()).toThrow();
  });

  test("the Service reaches the pods by label and port name, sticking to one node per client", async () => {
    const ds = await yaml("daemonset.yaml");
    const svc = await yaml("service.yaml");
    const pod = ds.spec.template;
    for (const [k, v] of Object.entries(svc.spec.selector)) expect(pod.metadata.labels[k]).toBe(v);
    const container = pod.spec.containers[0];
    const port = container.ports.find((p: any) => p.name === svc.spec.ports[0].targetPort);
    expect(port?.containerPort).toBe(8765);
    expect(container.args).toContain("$(POD_IP):8765");
    expect(svc.spec.sessionAffinity).toBe("ClientIP");
    expect(ds.spec.template.spec.nodeSelector["pyro.dev/kvm"]).toBe("true");
  });

  test("the token comes from a Secret mounted 0400 where --token-file points; the grace outlasts pyro's", async () => {
    const spec = (await yaml("daemonset.yaml")).spec.template.spec;
    const c = spec.containers[0];
    const tokenFile = c.args[c.args.indexOf("--token-file") + 1];
    const mount = c.volumeMounts.find((m: any) => m.name === "token");
    expect(join(mount.mountPath, "token")).toBe(tokenFile);
    const volume = spec.volumes.find((v: any) => v.name === "token");
    expect(volume.secret.defaultMode).toBe(0o400);
    const home = c.env.find((e: any) => e.name === "PYRO_HOME").value;
    expect(c.volumeMounts.find((m: any) => m.name === "pyro-home").mountPath).toBe(home);
    expect(c.volumeMounts.find((m: any) => m.name === "kvm").mountPath).toBe("/dev/kvm");
    expect(spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(STOP_GRACE_MS);
  });

  test("its pyro command line starts this pyro and serves MCP", async () => {
    const c = (await yaml("daemonset.yaml")).spec.template.spec.containers[0];
    expect(c.command).toEqual(["/usr/local/bin/pyro"]);
    const file = tokenAt("k8s/token", 0o400);
    await servesMcp(
      c.args.map((a: string) =>
        a === "$(POD_IP):8765" ? "127.0.0.1:0" : a === "/var/run/pyro/token/token" ? file : a,
      ),
    );
  });
});

describe("deploy/nomad", () => {
  async function job(): Promise<any> {
    const path = join(REPO, "deploy", "nomad", "pyro.nomad.hcl");
    return (await parseHcl("pyro.nomad.hcl", await Bun.file(path).text())).job["pyro-host"][0];
  }

  test("the job file is HCL (the probe: the parser refuses a broken one)", async () => {
    expect((await job()).type).toBe("system");
    expect(parseHcl("bad.hcl", 'job "x" { type = }')).rejects.toThrow();
  });

  test("a system job on Linux clients marked for KVM, its token 0600 where --token-file points", async () => {
    const j = await job();
    expect(j.constraint).toContainEqual({ attribute: `\${meta.pyro_kvm}`, value: "true" });
    const group = j.group.pyro[0];
    expect(group.network[0].port.mcp[0].static).toBe(8765);
    const task = group.task.serve[0];
    const args: string[] = task.config[0].args;
    expect(args.slice(0, 4)).toEqual(["mcp", "serve", "--listen", `\${NOMAD_ADDR_mcp}`]);
    expect(task.template[0].destination).toBe(args[args.indexOf("--token-file") + 1]);
    expect(task.template[0].perms).toBe("0600");
    expect(task.kill_signal).toBe("SIGTERM");
    expect(Number.parseInt(task.kill_timeout, 10) * 1000).toBeGreaterThan(STOP_GRACE_MS);
  });

  test("its pyro command line starts this pyro and serves MCP", async () => {
    const config = (await job()).group.pyro[0].task.serve[0].config[0];
    expect(config.command).toBe("/usr/local/bin/pyro");
    const secrets = dirname(tokenAt("nomad/secrets/mcp-token", 0o600));
    await servesMcp(
      config.args.map((a: string) =>
        a.replace(`\${NOMAD_ADDR_mcp}`, "127.0.0.1:0").replace(`\${NOMAD_SECRETS_DIR}`, secrets),
      ),
    );
  });
});
