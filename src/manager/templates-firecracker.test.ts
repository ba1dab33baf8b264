import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { installStandIn } from "../vmm/firecracker/standin.testing.ts";
import type { WorkspaceRecord } from "./record.ts";
import { ensureTemplate, keyParts, readyTemplate, shapeOf, templateKey, templatesDir } from "./templates.ts";
import {
  ensureFirecrackerTemplate,
  type FirecrackerKeyParts,
  findFirecrackerTemplate,
  firecrackerKeyParts,
  firecrackerPartsFor,
  firecrackerTemplateKey,
  readyFirecrackerTemplate,
} from "./templates-firecracker.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), "pyro-fctpl-store-"));
  dirs.push(d);
  return d;
};
const sha = (data: string | Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

const installed = {
  dir: "/env",
  manifest: {
    name: "debian:12",
    version: "1",
    kernel: { file: "vmlinux", sha256: "a".repeat(64), size: 1 },
    rootfs: { file: "rootfs.ext4", sha256: "b".repeat(64), size: 1 },
    agent_version: "0.1.0",
    agent_sha256: "c".repeat(64),
    protocol_version: PROTOCOL_VERSION,
    built_at: "2026-01-01T00:00:00Z",
    packages: [],
  },
};
const shape = {
  environment: "debian:12",
  accelerator: "kvm" as const,
  vcpu_count: 1,
  mem_mib: 512,
  network: "off" as const,
  backend: "firecracker" as const,
};

/** An installed environment in `home` (files only; nothing boots it here). */
function fakeEnvironment(home: string, name = "fake:1"): void {
  const dir = join(home, "environments", name.replace(":", "-"), "v1");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "vmlinux"), "kernel");
  writeFileSync(join(dir, "rootfs.ext4"), "rootfs");
  const manifest = {
    ...installed.manifest,
    name,
    version: "v1",
    kernel: { file: "vmlinux", sha256: sha("kernel"), size: 6 },
    rootfs: { file: "rootfs.ext4", sha256: sha("rootfs"), size: 6 },
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
}

describe("shapeOf on Firecracker", () => {
  const r = {
    backend: "firecracker",
    accelerator: "kvm",
    environment: "debian:12",
    vcpu_count: 1,
    mem_mib: 1024,
    network_policy: "off",
  } as WorkspaceRecord;
  test("a networkless Firecracker workspace has a Firecracker template shape; a networked one boots cold", () => {
    expect(shapeOf(r, {})).toEqual({
      ok: true,
      shape: {
        environment: "debian:12",
        accelerator: "kvm",
        vcpu_count: 1,
        mem_mib: 1024,
        network: "off",
        backend: "firecracker",
      },
    });
    const egress = shapeOf({ ...r, network_policy: "egress" }, {});
    expect(egress).toEqual({ ok: false, reason: "firecracker networking (a tap) boots cold" });
    expect(shapeOf(r, { PYRO_TEMPLATES: "off" })).toEqual({ ok: false, reason: "PYRO_TEMPLATES=off" });
  });
});

describe("Firecracker template key", () => {
  const parts = firecrackerKeyParts(installed, shape, "1.14.4");
  test("covers the backend and Firecracker's version, and differs from every QEMU key", () => {
    expect(parts).toMatchObject({ backend: "firecracker", firecracker_version: "1.14.4", network: "off" });
    const k = firecrackerTemplateKey(parts);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(firecrackerTemplateKey({ ...parts })).toBe(k);
    const changed: Partial<FirecrackerKeyParts>[] = [
      { firecracker_version: "1.13.1" },
      { kernel_sha256: "d".repeat(64) },
      { rootfs_sha256: "d".repeat(64) },
      { agent_sha256: null },
      { protocol_version: 99 },
      { vcpu_count: 2 },
      { mem_mib: 1024 },
      { data_disk_mib: 4096 },
      { format: 99 },
    ];
    for (const c of changed) expect(firecrackerTemplateKey({ ...parts, ...c })).not.toBe(k);
    const qemu = keyParts(installed, { ...shape, backend: undefined }, "7.2.22");
    expect(templateKey(qemu)).not.toBe(k);
  });

  test("no parts (so no template) for a tap network, under the jailer, an uninstalled environment or an unknown version", async () => {
    const home = temp();
    const bin = temp();
    installStandIn(bin);
    const env = { PATH: `${bin}:/usr/bin:/bin` };
    const reason = async (s: typeof shape | Record<string, unknown>, e: Record<string, string> = env) => {
      const p = await firecrackerPartsFor(home, e, s as typeof shape);
      return "reason" in p ? p.reason : null;
    };
    expect(await reason({ ...shape, environment: "fake:1" })).toContain("not installed");
    fakeEnvironment(home);
    const fake = { ...shape, environment: "fake:1" };
    // the positive case first: parts, with the version the binary says
    const ok = await firecrackerPartsFor(home, env, fake);
    expect("parts" in ok && ok.parts.firecracker_version).toBe("1.14.4");
    expect(await reason({ ...fake, network: "user" })).toContain("tap");
    expect(await reason(fake, { ...env, PYRO_FIRECRACKER_JAILER: "/usr/bin/jailer" })).toContain("jailer");
    expect(await reason(fake, { PATH: "/nonexistent" })).toContain("version is unknown");
  });
});

describe("the Firecracker template store", () => {
  function publish(
    home: string,
    parts: FirecrackerKeyParts,
    files: { state: string; mem: Uint8Array; desc: string },
  ) {
    const key = firecrackerTemplateKey(parts);
    const dir = join(templatesDir(home), key);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "state"), files.state);
    writeFileSync(join(dir, "mem"), files.mem);
    writeFileSync(join(dir, "firecracker.json"), files.desc);
    const meta = {
      key,
      parts,
      state: { bytes: files.state.length, sha256: sha(files.state) },
      mem: { bytes: files.mem.byteLength, sha256: sha(files.mem) },
      descriptor: { bytes: files.desc.length, sha256: sha(files.desc) },
      made_at: new Date().toISOString(),
      make_ms: 1,
    };
    writeFileSync(join(dir, "meta.json"), JSON.stringify(meta));
    return dir;
  }

  test("ready only when its three files match their hashes; mem re-hashed after a change; another release's is stale", async () => {
    const home = temp();
    const parts = firecrackerKeyParts(installed, shape, "1.14.4");
    expect((await findFirecrackerTemplate(home, parts)).status).toBe("missing");
    const mem = new Uint8Array(4096).fill(7);
    const dir = publish(home, parts, { state: "vmstate", mem, desc: "{}" });
    const ready = await findFirecrackerTemplate(home, parts);
    expect(ready.status).toBe("ready");
    // the mem verdict is cached by stamp: a rewrite with the same size and mtime is still caught
    writeFileSync(join(dir, "mem"), new Uint8Array(4096).fill(8));
    utimesSync(join(dir, "mem"), 1, 1);
    const bad = await findFirecrackerTemplate(home, parts);
    expect(bad.status !== "ready" && bad.reason).toContain("mem");
    writeFileSync(join(dir, "mem"), mem);
    expect((await findFirecrackerTemplate(home, parts)).status).toBe("ready");
    writeFileSync(join(dir, "firecracker.json"), "[]"); // same size, other bytes
    const d = await findFirecrackerTemplate(home, parts);
    expect(d.status !== "ready" && d.reason).toContain("firecracker.json");
    writeFileSync(join(dir, "firecracker.json"), "{}");
    // a new Firecracker release: this one is stale, named by the part that differs
    const newer = { ...parts, firecracker_version: "1.15.0" };
    const stale = await findFirecrackerTemplate(home, newer);
    expect(stale.status).toBe("stale");
    expect(stale.status !== "ready" && stale.reason).toContain("firecracker version");
    // QEMU's store does not take it for one of its own
    expect((await readyTemplate(home, {}, { ...shape, accelerator: "kvm", backend: undefined })).ok).toBe(
      false,
    );
  });

  test("a make that fails leaves no temp dir, is recorded and not retried at once (prepare retries); readyTemplate says why", async () => {
    const home = temp();
    const bin = temp();
    installStandIn(bin);
    fakeEnvironment(home);
    const progress: string[] = [];
    // the stand-in answers --version; the make itself cannot boot here (no KVM, or a fake kernel)
    const ctx = { home, env: { PATH: `${bin}:/usr/bin:/bin` }, progress: (m: string) => progress.push(m) };
    const fake = { ...shape, environment: "fake:1" };
    const first = await ensureTemplate(ctx, fake);
    expect(first.made).toBe(false);
    expect(first.status.status).toBe("broken");
    expect(first.status.status !== "ready" && first.status.reason).toContain("making it failed");
    expect(progress.some((m) => m.includes("Firecracker VM template"))).toBe(true);
    expect(readdirSync(templatesDir(home)).filter((n) => n.startsWith(".tmp-"))).toEqual([]);
    expect(readdirSync(templatesDir(home)).some((n) => n.startsWith(".failed-"))).toBe(true);
    progress.length = 0;
    await ensureFirecrackerTemplate(ctx, fake);
    expect(progress).toEqual([]); // recorded: not tried again within the hour
    await ensureFirecrackerTemplate(ctx, fake, { retryFailed: true });
    expect(progress.length).toBe(1);
    const r = await readyFirecrackerTemplate(home, ctx.env, fake);
    expect(r.ok === false && r.reason).toContain("template broken: making it failed");
  });
});
