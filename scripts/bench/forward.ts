/**
 * Published ports: requests through a published port from the host (the supervisor's
 * 127.0.0.1 listener, carried over the agent channel: src/supervisor/forward.ts) against the
 * same requests made inside the guest to the guest port directly — the baseline, measured in
 * the same run. Servers: test/fixtures/forward-server.ts; client: ./forward-client.ts, the
 * same code on both ends (inside the guest it runs under the guest's own CPU, emulated under
 * TCG). Issue 11 names no target: the ratios are the figures.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { callWorkspace } from "../../src/manager/client.ts";
import { readRecord } from "../../src/manager/record.ts";
import { downloads, echoRoundTrips, freshGets } from "./forward-client.ts";
import { withGuestWorkspace } from "./guest-exec.ts";
import {
  type BenchCtx,
  mib,
  ROOT,
  type Section,
  type SectionResult,
  statHeader,
  statRow,
  stats,
  table,
} from "./lib.ts";

const HTTP = 8000;
const ECHO = 8001;
const BULK = 32 * 1024 * 1024;
const RUN = ["env", "BUN_BE_BUN=1", "/usr/local/bin/pyro-agent"];

export const forwardSection: Section = {
  id: "forward",
  title: "11. Published ports",
  async run(ctx: BenchCtx): Promise<SectionResult> {
    const rtts = ctx.n(200, 50);
    const gets = ctx.n(50, 20);
    const bulks = ctx.n(5, 3);
    return withGuestWorkspace(ctx, async (id, pyro) => {
      for (const [file, path] of [
        ["forward-server.ts", join(ROOT, "test", "fixtures", "forward-server.ts")],
        ["forward-client.ts", join(ROOT, "scripts", "bench", "forward-client.ts")],
      ] as const) {
        await pyro.writeWorkspaceFile(id, file, readFileSync(path, "utf8"));
      }
      const server = await pyro.execWorkspace(
        id,
        [...RUN, "/workspace/forward-server.ts", `${HTTP}`, `${ECHO}`],
        {
          detach: true,
        },
      );
      const deadline = Date.now() + 120_000;
      while (!(await pyro.readExec(id, server.exec_id)).data.includes("listening")) {
        if (Date.now() > deadline) throw new Error("the guest server did not start");
        await Bun.sleep(200);
      }
      const open = async (guest_port: number) => {
        const r = readRecord(ctx.home, id);
        if (!r) throw new Error(`no record for ${id}`);
        return (await callWorkspace(ctx.home, r, { op: "sup.forward.open", guest_port })).host_port;
      };
      const httpPort = await open(HTTP);
      const echoPort = await open(ECHO);
      const inGuest = async (mode: string, port: number, n: number, size = 0): Promise<number[]> => {
        const r = await pyro.execWorkspace(
          id,
          [...RUN, "/workspace/forward-client.ts", mode, `${port}`, `${n}`, `${size}`],
          { timeout_seconds: 600 },
        );
        if (r.exit_code !== 0) throw new Error(`in-guest ${mode} failed: ${r.stderr}`);
        return JSON.parse(r.stdout) as number[];
      };
      ctx.log("forward: echo round trips");
      const rttHost = stats(await echoRoundTrips(echoPort, rtts));
      const rttGuest = stats(await inGuest("rtt", ECHO, rtts));
      ctx.log("forward: fresh GETs");
      const getHost = stats(await freshGets(httpPort, gets));
      const getGuest = stats(await inGuest("get", HTTP, gets));
      ctx.log("forward: 32 MiB downloads");
      const bulkHost = stats(await downloads(httpPort, BULK, bulks));
      const bulkGuest = stats(await inGuest("bulk", HTTP, bulks, BULK));
      const rate = (msTaken: number) => `${mib(BULK / (msTaken / 1000))}/s`;
      const slower = (host: number, guest: number) => `${(host / guest).toFixed(2)}× the in-guest time`;
      const body = [
        table(statHeader("Measurement", "Through the published port vs in the guest"), [
          statRow(
            "echo round trip, 64 B, one connection: host → published port",
            rttHost,
            slower(rttHost.median, rttGuest.median),
          ),
          statRow("the same inside the guest, to the guest port", rttGuest, "baseline"),
          statRow(
            "HTTP GET `/` on a fresh connection (connect → last byte): host → published port",
            getHost,
            slower(getHost.median, getGuest.median),
          ),
          statRow("the same inside the guest", getGuest, "baseline"),
          statRow(
            `download of ${mib(BULK)} (one connection): host → published port`,
            bulkHost,
            `${rate(bulkHost.median)} (${(bulkGuest.median / bulkHost.median).toFixed(2)}× the in-guest throughput)`,
          ),
          statRow(`the same inside the guest`, bulkGuest, rate(bulkGuest.median)),
        ]),
        "",
        "Both columns use the same client code (scripts/bench/forward-client.ts) and the same server (test/fixtures/forward-server.ts, run by the guest agent's bun). The in-guest client runs on the guest's CPU, which under TCG is emulated: its own work is slower there, so the ratios understate what the published port adds on a KVM host. The published path is host socket → supervisor → virtio-serial agent channel (one `net.connect` stream per connection, acknowledged in 1 MiB windows) → guest agent → guest socket.",
      ].join("\n");
      return {
        body,
        summary: [
          `Published port: echo RTT ${rttHost.median.toFixed(2)} ms vs ${rttGuest.median.toFixed(2)} ms in the guest; fresh GET ${getHost.median.toFixed(1)} ms vs ${getGuest.median.toFixed(1)} ms; ${mib(BULK)} at ${rate(bulkHost.median)} vs ${rate(bulkGuest.median)} in the guest`,
        ],
      };
    });
  },
};
