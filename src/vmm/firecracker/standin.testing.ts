/**
 * A stand-in Firecracker for tests without KVM: a Bun program that takes Firecracker's argv
 * (`--api-sock`, optional `--config-file`), answers the API socket like the transcribed
 * swagger says, and plays the vsock device's host side (`CONNECT <port>\n` → `OK <n>\n`, then
 * echo). Snapshots are real files: /snapshot/create writes the state (JSON naming the vsock
 * socket, as the real vmstate carries it) and the memory file; /snapshot/load reads them back
 * and brings the vsock socket up again (a relative uds_path, as a template has it, relative to
 * its cwd: the clone's run dir); `PATCH /drives` is refused before a boot or load, and for a
 * path that does not exist. `--version` prints "Firecracker v1.14.4".
 *
 * Every request is appended to `<dir>/requests.jsonl` and the argv to `<dir>/argv.json`
 * (`dir` = this stand-in's directory; Firecracker gets no environment but PATH). A file
 * `<dir>/fail-load` makes /snapshot/load answer 400 with its content as fault_message.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Write the stand-in into `dir` as an executable named `firecracker`; returns its path. */
export function installStandIn(dir: string): string {
  const program = join(dir, "firecracker-standin.ts");
  writeFileSync(program, `(${standIn.toString()})(${JSON.stringify(dir)});\n`);
  const bin = join(dir, "firecracker");
  writeFileSync(bin, `#!/bin/sh\nexec '${process.execPath}' '${program}' "$@"\n`);
  chmodSync(bin, 0o755);
  return bin;
}

export interface SeenRequest {
  method: string;
  path: string;
  body?: unknown;
}

export function seenRequests(dir: string): SeenRequest[] {
  const f = join(dir, "requests.jsonl");
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8")
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

export function standInArgv(dir: string): string[] {
  return JSON.parse(readFileSync(join(dir, "argv.json"), "utf8"));
}

// Runs in the stand-in process (serialised with toString: only globals and require inside).
function standIn(dir: string): void {
  const fs = require("node:fs") as typeof import("node:fs");
  const path = require("node:path") as typeof import("node:path");
  const args = process.argv.slice(2);
  if (args[0] === "--version") {
    console.log("Firecracker v1.14.4");
    process.exit(0);
  }
  fs.writeFileSync(path.join(dir, "argv.json"), JSON.stringify(args));
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const apiSock = opt("--api-sock") as string;
  const configFile = opt("--config-file");
  let state: "Not started" | "Running" | "Paused" = "Not started";
  let vsockListener: { stop(closeActive?: boolean): void } | null = null;
  const listenVsock = (udsPath: string) => {
    vsockListener = Bun.listen<{ connected: boolean }>({
      unix: udsPath,
      socket: {
        open(s) {
          s.data = { connected: false };
        },
        data(s, bytes) {
          if (!s.data.connected) {
            if (String(bytes).startsWith("CONNECT ")) {
              s.data.connected = true;
              s.write("OK 1073741824\n");
            } else s.end();
            return;
          }
          s.write(bytes); // the "guest" echoes
        },
      },
    });
  };
  if (configFile) {
    const cfg = JSON.parse(fs.readFileSync(configFile, "utf8"));
    if (cfg.vsock?.uds_path) listenVsock(cfg.vsock.uds_path);
    state = "Running";
  }
  const fault = (status: number, message: string) => Response.json({ fault_message: message }, { status });
  Bun.serve({
    unix: apiSock,
    async fetch(req) {
      const text = await req.text();
      const seen: { method: string; path: string; body?: unknown } = {
        method: req.method,
        path: new URL(req.url).pathname,
      };
      if (text) seen.body = JSON.parse(text);
      fs.appendFileSync(path.join(dir, "requests.jsonl"), `${JSON.stringify(seen)}\n`);
      const body = seen.body as Record<string, any> | undefined;
      const route = `${seen.method} ${seen.path}`;
      if (route === "GET /")
        return Response.json({
          app_name: "Firecracker",
          id: "anonymous-instance",
          state,
          vmm_version: "1.14.4",
        });
      if (route === "PATCH /vm") {
        if (state === "Not started") return fault(400, "The microVM is not started");
        state = body?.state === "Paused" ? "Paused" : "Running";
        return new Response(null, { status: 204 });
      }
      if (route === "PUT /snapshot/create") {
        if (state !== "Paused") return fault(400, "Cannot create snapshot: the microVM is not paused");
        const cfg = configFile ? JSON.parse(fs.readFileSync(configFile, "utf8")) : {};
        fs.writeFileSync(body?.snapshot_path, JSON.stringify({ vsock: cfg.vsock?.uds_path ?? null }));
        fs.writeFileSync(body?.mem_file_path, "guest memory ".repeat(4096));
        return new Response(null, { status: 204 });
      }
      if (route === "PUT /snapshot/load") {
        if (state !== "Not started" || configFile)
          return fault(400, "Loading a snapshot is not allowed after boot");
        const failFile = path.join(dir, "fail-load");
        if (fs.existsSync(failFile)) return fault(400, fs.readFileSync(failFile, "utf8").trim());
        const mem = body?.mem_backend?.backend_path ?? body?.mem_file_path;
        if (!fs.existsSync(body?.snapshot_path) || !fs.existsSync(mem))
          return fault(400, "snapshot file missing");
        const snap = JSON.parse(fs.readFileSync(body?.snapshot_path, "utf8"));
        if (snap.vsock) listenVsock(snap.vsock);
        state = body?.resume_vm ? "Running" : "Paused";
        return new Response(null, { status: 204 });
      }
      if (route === "PUT /actions" && body?.action_type === "SendCtrlAltDel") {
        setTimeout(() => {
          vsockListener?.stop(true);
          process.exit(0);
        }, 10);
        return new Response(null, { status: 204 });
      }
      if (seen.method === "PATCH" && seen.path.startsWith("/drives/")) {
        // swagger: post-boot only (a loaded snapshot counts as booted)
        if (state === "Not started")
          return fault(400, "The requested operation is not supported before starting the microVM.");
        if (body?.path_on_host && !fs.existsSync(body.path_on_host))
          return fault(400, "Unable to patch the block device: no such file");
        return new Response(null, { status: 204 });
      }
      return fault(400, `stand-in: unsupported ${route}`);
    },
  });
}
