/**
 * The whole test suite: build (hash-cached), then `bun test`, then say how many real-guest
 * tests ran. Under CI (or PYRO_REQUIRE_GUESTS=1) a real-guest test may not skip: it fails,
 * and a run with zero real-guest tests fails too.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const bun = process.execPath;
const requireGuests = process.env.CI === "true" || process.env.PYRO_REQUIRE_GUESTS === "1";
if (requireGuests) process.env.PYRO_REQUIRE_GUESTS = "1";
// Same default as scripts/setup.sh: outside the checkout when root, so clones share it.
process.env.PYRO_BUILD_CACHE ??=
  process.getuid?.() === 0 ? "/var/cache/pyro/build" : join(root, ".cache", "build");

// Chat clients installed by scripts/setup.sh (CI): on PATH for the host-onramps tests, which
// may not skip under CI.
const clientsBin = join(process.env.PYRO_BUILD_CACHE, "..", "clients", "current", "node_modules", ".bin");
if (existsSync(clientsBin)) process.env.PATH = `${process.env.PATH}:${clientsBin}`;
if (requireGuests) process.env.PYRO_REQUIRE_CLIENTS = "1";

const build = Bun.spawnSync([bun, join(root, "scripts", "build.ts")], {
  stdout: "inherit",
  stderr: "inherit",
  cwd: root,
});
if (build.exitCode !== 0) process.exit(build.exitCode ?? 1);

const args = process.argv.slice(2);
const proc = Bun.spawn([bun, "test", "--timeout", "600000", ...args], {
  cwd: root,
  stdout: "pipe",
  stderr: "pipe",
  env: process.env,
});
let guestPassed = 0;
let guestSkipped = 0;
async function pump(stream: ReadableStream<Uint8Array>, out: NodeJS.WriteStream) {
  const dec = new TextDecoder();
  let carry = "";
  for await (const chunk of stream) {
    out.write(chunk);
    carry += dec.decode(chunk, { stream: true });
    const lines = carry.split("\n");
    carry = lines.pop() ?? "";
    for (const l of lines) {
      if (/^\(pass\) real guest/.test(l)) guestPassed++;
      if (/^\(skip\) real guest/.test(l)) guestSkipped++;
    }
  }
}
await Promise.all([pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr)]);
const code = await proc.exited;
console.log(`real-guest tests ran: ${guestPassed} passed, ${guestSkipped} skipped`);
if (code !== 0) process.exit(code);
if (requireGuests && args.length === 0 && (guestPassed === 0 || guestSkipped > 0)) {
  console.error("CI requires real-guest tests to run (none may skip)");
  process.exit(1);
}
