import { describe, expect, test } from "bun:test";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rejection } from "../../protocol/testing.ts";
import { scratch } from "../testing.ts";
import { FirecrackerApi } from "./api.ts";

const { dir, serve } = scratch("pyro-fcapi-");

interface Seen {
  method: string;
  path: string;
  body: unknown;
}

/** A tiny Firecracker look-alike on a UNIX socket: 204 for everything unless `reply` says otherwise. */
function fakeApi(reply?: (seen: Seen) => Response | undefined) {
  const path = join(dir(), "fc.sock");
  const seen: Seen[] = [];
  const server = Bun.serve({
    unix: path,
    async fetch(req) {
      const text = await req.text();
      const s = {
        method: req.method,
        path: new URL(req.url).pathname,
        body: text ? JSON.parse(text) : undefined,
      };
      seen.push(s);
      return reply?.(s) ?? new Response(null, { status: 204 });
    },
  });
  serve(server);
  return { api: new FirecrackerApi(path, { timeoutMs: 5000 }), seen, path };
}

describe("FirecrackerApi", () => {
  test("runtime calls send the documented method, path and body", async () => {
    const { api, seen } = fakeApi();
    await api.pause();
    await api.resume();
    await api.createSnapshot({
      snapshot_path: "/s/vm.state",
      mem_file_path: "/s/vm.mem",
      snapshot_type: "Full",
    });
    await api.loadSnapshot({
      snapshot_path: "/s/vm.state",
      mem_backend: { backend_type: "File", backend_path: "/s/vm.mem" },
      resume_vm: true,
    });
    await api.sendCtrlAltDel();
    expect(seen).toEqual([
      { method: "PATCH", path: "/vm", body: { state: "Paused" } },
      { method: "PATCH", path: "/vm", body: { state: "Resumed" } },
      {
        method: "PUT",
        path: "/snapshot/create",
        body: { snapshot_path: "/s/vm.state", mem_file_path: "/s/vm.mem", snapshot_type: "Full" },
      },
      {
        method: "PUT",
        path: "/snapshot/load",
        body: {
          snapshot_path: "/s/vm.state",
          mem_backend: { backend_type: "File", backend_path: "/s/vm.mem" },
          resume_vm: true,
        },
      },
      { method: "PUT", path: "/actions", body: { action_type: "SendCtrlAltDel" } },
    ]);
  });

  test("snapshot variants and PATCH /drives send the documented bodies (swagger 1.14.4)", async () => {
    const { api, seen } = fakeApi();
    await api.createSnapshot({
      snapshot_path: "/s/d.state",
      mem_file_path: "/s/d.mem",
      snapshot_type: "Diff",
    });
    await api.loadSnapshot({
      snapshot_path: "/s/vm.state",
      mem_file_path: "/s/vm.mem", // the deprecated form, still accepted by 1.14
      enable_diff_snapshots: true,
      resume_vm: false,
      network_overrides: [{ iface_id: "eth0", host_dev_name: "pyt0123456789ab" }],
    });
    await api.patchDrive({ drive_id: "data", path_on_host: "/w/clone/data.ext4" });
    expect(seen).toEqual([
      {
        method: "PUT",
        path: "/snapshot/create",
        body: { snapshot_path: "/s/d.state", mem_file_path: "/s/d.mem", snapshot_type: "Diff" },
      },
      {
        method: "PUT",
        path: "/snapshot/load",
        body: {
          snapshot_path: "/s/vm.state",
          mem_file_path: "/s/vm.mem",
          enable_diff_snapshots: true,
          resume_vm: false,
          network_overrides: [{ iface_id: "eth0", host_dev_name: "pyt0123456789ab" }],
        },
      },
      {
        method: "PATCH",
        path: "/drives/data",
        body: { drive_id: "data", path_on_host: "/w/clone/data.ext4" },
      },
    ]);
  });

  test("snapshot and drive bodies outside the schema are never sent", async () => {
    const { api, seen } = fakeApi();
    const bad = [
      api.createSnapshot({ snapshot_path: "/a", mem_file_path: "/b", snapshot_type: "Incremental" } as any),
      api.createSnapshot({ snapshot_path: "/a" } as any), // mem_file_path is required
      api.loadSnapshot({ snapshot_path: "/a" }), // neither memory source
      api.loadSnapshot({
        snapshot_path: "/a",
        mem_backend: { backend_type: "Mmap", backend_path: "/m" },
      } as any),
      api.loadSnapshot({
        snapshot_path: "/a",
        mem_file_path: "/m",
        vsock_override: { uds_path: "/v" },
      } as any),
      api.patchDrive({ drive_id: "data", is_read_only: true } as any), // not a PartialDrive field
      api.patchDrive({ drive_id: "" }),
    ];
    for (const p of bad) expect((await rejection(p)).code).toBe("INVALID_INPUT");
    expect(seen).toEqual([]);
  });

  test("describeInstance parses InstanceInfo", async () => {
    const info = {
      app_name: "Firecracker",
      id: "anonymous-instance",
      state: "Running",
      vmm_version: "1.14.4",
    };
    const { api } = fakeApi((s) => (s.path === "/" ? Response.json(info) : undefined));
    expect(await api.describeInstance()).toEqual({ ...info, state: "Running" });
  });

  test("a 400 becomes VMM_FAILED carrying fault_message", async () => {
    const { api } = fakeApi(() =>
      Response.json(
        { fault_message: "The requested operation is not supported after starting the microVM." },
        { status: 400 },
      ),
    );
    const err = await rejection(api.pause());
    expect(err.code).toBe("VMM_FAILED");
    expect(err.message).toContain("PATCH /vm failed (400)");
    expect(err.message).toContain("not supported after starting");
    expect(err.details?.faultMessage).toBe(
      "The requested operation is not supported after starting the microVM.",
    );
  });

  test("a body the strict schema rejects is never sent", async () => {
    const { api, seen } = fakeApi();
    // Both memory sources at once: swagger says exactly one.
    const err = await rejection(
      api.loadSnapshot({
        snapshot_path: "/s/vm.state",
        mem_file_path: "/s/vm.mem",
        mem_backend: { backend_type: "File", backend_path: "/s/vm.mem" },
      }),
    );
    expect(err.code).toBe("INVALID_INPUT");
    const bogus = { snapshot_path: "/a", mem_file_path: "/b", compress: true } as any;
    expect((await rejection(api.createSnapshot(bogus))).code).toBe("INVALID_INPUT");
    expect(seen).toEqual([]);
  });

  test("a missing API socket is VMM_FAILED naming the socket", async () => {
    const api = new FirecrackerApi(join(tmpdir(), `pyro-no-such-${process.pid}.sock`));
    const err = await rejection(api.sendCtrlAltDel());
    expect(err.code).toBe("VMM_FAILED");
    expect(err.message).toContain("pyro-no-such-");
  });
});
