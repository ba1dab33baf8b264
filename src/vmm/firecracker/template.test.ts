import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { rejection } from "../../protocol/testing.ts";
import { scratch } from "../testing.ts";
import { FirecrackerApi } from "./api.ts";
import { buildFirecrackerConfig } from "./config.ts";
import type { FirecrackerConfig } from "./schema.ts";
import { type CloneTarget, type FirecrackerTemplate, planTemplateClone, runClonePlan } from "./template.ts";

const { dir, serve } = scratch("pyro-fctpl-");

/** The config a template would boot with: per-clone paths relative to Firecracker's cwd. */
function templateConfig(tap?: string): FirecrackerConfig {
  return buildFirecrackerConfig(
    {
      workspaceId: "tpl",
      runDir: "/tpl/run",
      workspaceDir: "/tpl/files",
      dataDiskPath: "data.ext4",
      environment: {
        name: "debian:12",
        version: "1",
        kernelPath: "/env/vmlinux",
        rootfsPath: "/env/rootfs.ext4",
      },
      vcpuCount: 1,
      memMib: 512,
      network: tap !== undefined,
      consoleLogPath: "/tpl/console.log",
      bootTimeoutMs: 1000,
    },
    {
      vsockUdsPath: "vsock.sock",
      kernelArgs: ["console=ttyS0"],
      tap: tap
        ? {
            hostDevName: tap,
            guestMac: "02:70:00:00:00:01",
            guestIp: "172.30.0.2",
            gatewayIp: "172.30.0.1",
            netmask: "255.255.255.252",
            dns: "172.30.0.1",
          }
        : undefined,
    },
  );
}

const tpl = (over: Partial<FirecrackerTemplate> = {}): FirecrackerTemplate => ({
  statePath: "/tpl/snap/vm.state",
  memPath: "/tpl/snap/vm.mem",
  config: templateConfig(),
  firecrackerVersion: "1.14.4",
  ...over,
});

const clone = (over: Partial<CloneTarget> = {}): CloneTarget => ({
  firecrackerBin: "/usr/bin/firecracker",
  runDir: "/ws/a/run",
  dataDiskPath: "/ws/a/data.ext4",
  firecrackerVersion: "1.14.4",
  ...over,
});

describe("planTemplateClone", () => {
  test("two clones of one template differ only in their own dir, disk and sockets; the calls come in order", () => {
    const a = planTemplateClone(tpl(), clone());
    expect(a).toEqual({
      argv: ["/usr/bin/firecracker", "--api-sock", "/ws/a/run/fc.sock"],
      cwd: "/ws/a/run",
      apiSocketPath: "/ws/a/run/fc.sock",
      vsockPath: "/ws/a/run/vsock.sock",
      removeBeforeStart: ["/ws/a/run/fc.sock", "/ws/a/run/vsock.sock"],
      links: [{ path: "/ws/a/run/data.ext4", target: "/ws/a/data.ext4" }],
      calls: [
        {
          method: "PUT",
          path: "/snapshot/load",
          body: {
            snapshot_path: "/tpl/snap/vm.state",
            mem_backend: { backend_type: "File", backend_path: "/tpl/snap/vm.mem" },
            resume_vm: false,
          },
        },
        {
          method: "PATCH",
          path: "/drives/data",
          body: { drive_id: "data", path_on_host: "/ws/a/data.ext4" },
        },
        { method: "PATCH", path: "/vm", body: { state: "Resumed" } },
      ],
    });
    const b = planTemplateClone(tpl(), clone({ runDir: "/ws/b/run", dataDiskPath: "/ws/b/data.ext4" }));
    expect(b.vsockPath).not.toBe(a.vsockPath);
    expect(b.calls[0]).toEqual(a.calls[0]); // same template files, shared read-only
    expect(b.calls[1]?.body).toEqual({ drive_id: "data", path_on_host: "/ws/b/data.ext4" });
  });

  test("a networked template gets the clone's tap through network_overrides", () => {
    const p = planTemplateClone(
      tpl({ config: templateConfig("pyttemplate0001") }),
      clone({ tapName: "pyt0123456789ab" }),
    );
    expect(p.calls[0]?.body).toMatchObject({
      network_overrides: [{ iface_id: "eth0", host_dev_name: "pyt0123456789ab" }],
    });
  });

  test("what a 1.14 snapshot cannot re-point per clone is refused before anything runs", () => {
    const refuse = (t: FirecrackerTemplate, c: CloneTarget, why: string) => {
      let err: unknown;
      try {
        planTemplateClone(t, c);
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string })?.code).toBe("INVALID_INPUT");
      expect(String((err as Error).message)).toContain(why);
    };
    const abs = (f: (c: FirecrackerConfig) => void) => {
      const c = templateConfig();
      f(c);
      return tpl({ config: c });
    };
    refuse(
      abs((c) => (c.vsock!.uds_path = "/tpl/run/vsock.sock")),
      clone(),
      "vsock uds_path must be relative",
    );
    refuse(
      abs((c) => (c.vsock!.uds_path = "../x.sock")),
      clone(),
      "vsock uds_path must be relative",
    );
    refuse(
      abs((c) => (c.drives[1]!.path_on_host = "/tpl/data.ext4")),
      clone(),
      "data drive path must be relative",
    );
    refuse(
      abs((c) => (c.drives = c.drives.slice(0, 1))),
      clone(),
      'no "data" drive',
    );
    refuse(tpl(), clone({ firecrackerVersion: "1.15.0" }), "rebuild the template");
    refuse(tpl({ config: templateConfig("pyttemplate0001") }), clone(), "needs its own tap");
    refuse(tpl(), clone({ tapName: "pyt0123456789ab" }), "cannot add one");
    refuse(
      tpl({ config: templateConfig("pyttemplate0001"), firecrackerVersion: "1.12.1" }),
      clone({ tapName: "pyt0123456789ab", firecrackerVersion: "1.12.1" }),
      "firecracker >= 1.13",
    );
  });
});

describe("runClonePlan", () => {
  test("sends the planned calls in order, and stops at the first failure", async () => {
    const path = join(dir(), "fc.sock");
    const seen: { method: string; path: string; body: unknown }[] = [];
    let failDrive = false;
    serve(
      Bun.serve({
        unix: path,
        async fetch(req) {
          const body = await req.json();
          const p = new URL(req.url).pathname;
          seen.push({ method: req.method, path: p, body });
          if (failDrive && p.startsWith("/drives/"))
            return Response.json({ fault_message: "drive data: file not found" }, { status: 400 });
          return new Response(null, { status: 204 });
        },
      }),
    );
    const api = new FirecrackerApi(path, { timeoutMs: 5000 });
    const plan = planTemplateClone(tpl(), clone());
    await runClonePlan(api, plan);
    expect(seen).toEqual(plan.calls.map((c) => ({ method: c.method, path: c.path, body: c.body })));
    seen.length = 0;
    failDrive = true;
    const err = await rejection(runClonePlan(api, plan));
    expect(err.code).toBe("VMM_FAILED");
    expect(err.message).toContain("drive data: file not found");
    expect(seen.map((s) => s.path)).toEqual(["/snapshot/load", "/drives/data"]); // never resumed
  });
});
