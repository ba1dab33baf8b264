/**
 * The whole test suite (or the files/filters given as arguments): build (hash-cached), then
 * `bun test`, then a summary of real-guest tests run and of every skip.
 * Under CI (or PYRO_REQUIRE_GUESTS=1) nothing may skip: any skipped or todo test fails the run,
 * except one whose name carries `[not runnable here: ...]` (test/capabilities.ts gives that
 * only to what this machine class cannot have: usable KVM, Firecracker, vsock loopback); those
 * are listed by name with their reason. Arguments narrow what runs, never the guard; a full
 * run (no arguments) must also have run at least one real-guest test.
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
// Sets: bun repeats the skipped tests in a summary at the end of a multi-file run.
const notRunnable = new Set<string>();
const skipped = new Set<string>();
// What bun printed between the previous result line and each failure (its error, diff and
// stack), repeated at the very end: CI keeps only the tail of a long run's output.
const failures = new Map<string, string>();
const FAILURE_LINES = 80;
async function pump(stream: ReadableStream<Uint8Array>, out: NodeJS.WriteStream) {
  const dec = new TextDecoder();
  let carry = "";
  let since: string[] = [];
  for await (const chunk of stream) {
    out.write(chunk);
    carry += dec.decode(chunk, { stream: true });
    const lines = carry.split("\n");
    carry = lines.pop() ?? "";
    for (const l of lines) {
      // (bun lists the failures again in its summary: the first sighting has the error)
      if (/^\(fail\) /.test(l) && !failures.has(l))
        failures.set(l, [...since.slice(-FAILURE_LINES), l].join("\n"));
      if (/^\((pass|fail|skip|todo)\) /.test(l)) since = [];
      else since.push(l);
      if (/^\(pass\) real guest/.test(l)) guestPassed++;
      const skip = /^\((skip|todo)\) (.*)$/.exec(l);
      if (!skip) continue;
      if (/\[not runnable here: .*\]/.test(l)) notRunnable.add(l.slice(7));
      else skipped.add(l);
    }
  }
}
await Promise.all([pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr)]);
const code = await proc.exited;
if (failures.size > 0) {
  console.log(`\nfailure details (${failures.size}; up to ${FAILURE_LINES} lines before each):`);
  for (const f of failures.values()) console.log(`${f}\n`);
}
console.log(`real-guest tests passed: ${guestPassed}`);
if (notRunnable.size > 0) {
  console.log(`not runnable here (${notRunnable.size}):`);
  for (const n of notRunnable) console.log(`  ${n}`);
}
if (skipped.size > 0) {
  console.log(`skipped (${skipped.size}):`);
  for (const n of skipped) console.log(`  ${n}`);
}
if (code !== 0) process.exit(code);
if (requireGuests && skipped.size > 0) {
  console.error(`CI: ${skipped.size} test(s) skipped that this machine must run (listed above)`);
  process.exit(1);
}
if (requireGuests && args.length === 0 && guestPassed === 0) {
  console.error("CI: no real-guest test ran");
  process.exit(1);
}
