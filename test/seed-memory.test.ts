/**
 * Bulk transfers keep memory bounded: seeding a large tree must not grow the supervisor's
 * or the CLI's resident memory with the size of the data (host compat, so it runs fast).
 */
import { beforeAll, expect, test } from "bun:test";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, freshHome, PYRO, processesMatching, pyro } from "./helpers.ts";

const TOTAL_MIB = 512;
/** Far below the data size: what the processes themselves need plus bounded buffers. */
const RSS_CAP_MIB = 250;

beforeAll(async () => {
  await ensureBuilt();
});

function rssMib(pid: number, field: "VmRSS" | "VmHWM"): number {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`${field}:\\s+(\\d+) kB`));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

test(`seeding ${TOTAL_MIB} MiB keeps pyro's memory under ${RSS_CAP_MIB} MiB`, async () => {
  const home = freshHome();
  const src = mkdtempSync(join(process.env.PYRO_TEST_TMP as string, "bigseed-"));
  mkdirSync(join(src, "data"));
  // Incompressible-ish content, 64 files of 8 MiB, written without holding it all in memory.
  const chunk = new Uint8Array(1024 * 1024);
  for (let f = 0; f < TOTAL_MIB / 8; f++) {
    const fd = openSync(join(src, "data", `f${f}.bin`), "w");
    for (let i = 0; i < 8; i++) {
      crypto.getRandomValues(chunk.subarray(0, 65536));
      chunk.copyWithin(65536, 0, 65536);
      writeSync(fd, chunk);
    }
    closeSync(fd);
  }
  const create = Bun.spawn(
    [PYRO, "workspace", "create", "--allow-host-compat", "--seed-path", src, "--json"],
    {
      env: { ...(process.env as Record<string, string>), PYRO_HOME: home },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  let cliPeak = 0;
  const sampler = setInterval(() => {
    cliPeak = Math.max(cliPeak, rssMib(create.pid, "VmRSS"));
  }, 50);
  const out = await new Response(create.stdout).text();
  const code = await create.exited;
  clearInterval(sampler);
  expect(code).toBe(0);
  const ws = JSON.parse(out);
  const sup = processesMatching(`__supervise --id ${ws.workspace_id}`)[0];
  const supPeak = rssMib(Number(sup?.split(" ")[0]), "VmHWM");
  console.error(
    `seed ${TOTAL_MIB} MiB: CLI peak RSS ${cliPeak.toFixed(0)} MiB, supervisor peak RSS ${supPeak.toFixed(0)} MiB`,
  );
  expect(supPeak).toBeGreaterThan(0);
  expect(supPeak).toBeLessThan(RSS_CAP_MIB);
  expect(cliPeak).toBeLessThan(RSS_CAP_MIB);
  const du = await pyro(["workspace", "exec", ws.workspace_id, "--json", "--", "du", "-sm", "data"], {
    home,
  });
  expect(Number(du.json.stdout.split("\t")[0])).toBeGreaterThanOrEqual(TOTAL_MIB);
  await pyro(["workspace", "delete", ws.workspace_id], { home });
});
