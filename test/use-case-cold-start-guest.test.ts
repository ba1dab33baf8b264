/**
 * Use case 1 of the contract (docs/use-cases/cold-start.md), as a chat client runs it:
 * `dist/pyro mcp serve --mode cold-start` driven by the official MCP client against a real
 * guest, step by step as the recipe's table: seed → read the docs → run the checks → start
 * the server with an http readiness probe and a published port (and once with a probe that
 * cannot pass: SERVICE_NOT_READY quoting the log tail) → check it from the host → its logs →
 * summary → stop (the host port refuses) → delete. One debian:12-build workspace, one boot.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { guest, guestHome } from "./guest-env.ts";
import { mcpSession, pyro } from "./helpers.ts";

const ENV = "debian:12-build";
const README = `# tiny-site
Check it: \`sh check.sh\`
Serve it: \`python3 -m http.server 8000 --directory site\`
`;
const CHECK = `#!/bin/sh
# the project's checks: the page exists and is well-formed enough
set -e
test -s site/index.html
grep -q '<title>tiny-site</title>' site/index.html
python3 -c 'import html.parser, sys; html.parser.HTMLParser().feed(open("site/index.html").read())'
echo "checks passed"
`;
const PAGE = "<html><head><title>tiny-site</title></head><body>served from the workspace</body></html>\n";

let home = "";
let tmp = "";
let session: Awaited<ReturnType<typeof mcpSession>> | null = null;
let id = "";
const call = (name: string, args: Record<string, unknown>) =>
  (session as NonNullable<typeof session>).call(name, args);
const callError = (name: string, args: Record<string, unknown>) =>
  (session as NonNullable<typeof session>).callError(name, args);

beforeAll(async () => {
  if (!guest.ok) return;
  home = await guestHome();
  const b = await pyro(["env", "build", ENV, "--json"], { home });
  if (b.code !== 0) throw new Error(`env build ${ENV} failed: ${b.stdout}${b.stderr}`);
  tmp = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "cold-start-"));
  const repo = join(tmp, "repo");
  mkdirSync(join(repo, "site"), { recursive: true });
  writeFileSync(join(repo, "README.md"), README);
  writeFileSync(join(repo, "check.sh"), CHECK, { mode: 0o755 });
  writeFileSync(join(repo, "site", "index.html"), PAGE);
  session = await mcpSession(
    "pyro-cold-start",
    ["--mode", "cold-start", "--no-project-source", "--allow-host-path", repo],
    { home, cwd: tmp },
  );
}, 1_800_000);

afterAll(async () => {
  if (id) await call("workspace_delete", { workspace_id: id }).catch(() => {});
  await session?.client.close();
});

guest.test(
  "real guest: cold-start from chat: seed, checks, a service ready by http and published, checked from the host",
  async () => {
    const { tools } = await (session as NonNullable<typeof session>).client.listTools();
    const names = tools.map((t) => t.name);
    for (const n of ["service_start", "service_list", "service_status", "service_logs", "service_stop"])
      expect(names).toContain(n);

    // 1. seed
    const created = await call("workspace_create", {
      environment: ENV,
      name: "cold-1",
      seed_path: join(tmp, "repo"),
      network_policy: "egress+published-ports",
    });
    id = created.workspace_id;
    expect(created.execution_mode).toBe("guest");
    expect(created.workspace_seed.origin_kind).toBe("directory");

    // 2. read the docs
    const readme = await call("workspace_exec", { workspace_id: id, command: "cat README.md" });
    expect(readme.stdout).toContain("python3 -m http.server 8000 --directory site");

    // 3. run the checks
    const checks = await call("workspace_exec", {
      workspace_id: id,
      command: "sh check.sh",
      timeout_seconds: 120,
    });
    expect([checks.exit_code, checks.stdout]).toEqual([0, "checks passed\n"]);

    // 4b. a start whose probe cannot pass (the server listens on 8001, the probe asks 8000):
    // SERVICE_NOT_READY quoting the log tail, the service recorded failed
    const wrong = await callError("service_start", {
      workspace_id: id,
      service_name: "site",
      command: "echo starting-site-on-8001; exec python3 -m http.server 8001 --directory site",
      readiness: { type: "http", url: "http://127.0.0.1:8000/" },
      ready_timeout_seconds: 5,
    });
    expect(wrong.code).toBe("SERVICE_NOT_READY");
    expect(wrong.message).toContain("starting-site-on-8001");
    expect((await call("service_status", { workspace_id: id, service_name: "site" })).state).toBe("failed");

    // 4. start the server: ready by the http probe, port published
    const site = await call("service_start", {
      workspace_id: id,
      service_name: "site",
      command: "python3 -m http.server 8000 --directory site",
      readiness: { type: "http", url: "http://127.0.0.1:8000/" },
      ready_timeout_seconds: 60,
      published_ports: [{ guest_port: 8000 }],
    });
    expect(site.state).toBe("ready");
    expect(site.ready_at).not.toBeNull();
    const port = site.published_ports[0];
    expect(port).toMatchObject({ guest_port: 8000, host: "127.0.0.1" });

    // 5. check it, from the host and from the machine
    const res = await fetch(`http://127.0.0.1:${port.host_port}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(PAGE);
    const inside = await call("workspace_exec", {
      workspace_id: id,
      command: "curl -s http://127.0.0.1:8000/",
    });
    expect(inside.stdout).toBe(PAGE);

    // 6. its logs: http.server logs each request on stderr
    const logs = await call("service_logs", { workspace_id: id, service_name: "site", tail_lines: 20 });
    expect(logs.stderr).toContain('"GET / HTTP/1.1" 200');

    // 7. summary: the checks ran, the service is listed
    const sum = await call("workspace_summary", { workspace_id: id });
    expect(sum.commands.recent.map((c: any) => c.command)).toContain("sh check.sh");
    expect(sum.services.map((s: any) => [s.service_name, s.state])).toEqual([["site", "ready"]]);

    // 8. stop: the port refuses; the listing shows it stopped
    const stopped = await call("service_stop", { workspace_id: id, service_name: "site" });
    expect([stopped.state, stopped.published_ports]).toEqual(["stopped", []]);
    const after = await fetch(`http://127.0.0.1:${port.host_port}/`).then(
      () => "answered",
      () => "refused",
    );
    expect(after).toBe("refused");
    expect((await call("service_list", { workspace_id: id })).services[0].state).toBe("stopped");
  },
  900_000,
);
