import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { WorkspaceRecord } from "./record.ts";
import {
  findTemplate,
  keyParts,
  shapeOf,
  TEMPLATE_FORMAT,
  type TemplateKeyParts,
  templateKey,
  templatesDir,
} from "./templates.ts";

const installed = {
  dir: "/env",
  manifest: {
    name: "debian:12",
    version: "1",
    kernel: { file: "vmlinux", sha256: "a".repeat(64), size: 1 },
    rootfs: { file: "rootfs.ext4", sha256: "b".repeat(64), size: 1 },
    agent_version: "0.1.0",
    agent_sha256: "c".repeat(64),
    protocol_version: 1,
    built_at: "2026-01-01T00:00:00Z",
    packages: [],
  },
};
const shape = {
  environment: "debian:12",
  accelerator: "tcg" as const,
  vcpu_count: 1,
  mem_mib: 512,
  network: "off" as const,
};

describe("template key", () => {
  const parts = keyParts(installed, shape, "7.2.22");

  test("covers what the saved machine depends on", () => {
    expect(parts).toMatchObject({
      format: TEMPLATE_FORMAT,
      kernel_sha256: "a".repeat(64),
      rootfs_sha256: "b".repeat(64),
      agent_sha256: "c".repeat(64),
      qemu_version: "7.2.22",
      accelerator: "tcg",
      cpu_model: "max",
      vcpu_count: 1,
      mem_mib: 512,
      data_disk_mib: 8192,
      network: "off",
    });
    expect(keyParts(installed, { ...shape, accelerator: "kvm" }, "7.2.22").cpu_model).toBe("host");
  });

  test("is stable and changes with every part", () => {
    const k = templateKey(parts);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(templateKey({ ...parts })).toBe(k);
    const changed: Partial<TemplateKeyParts>[] = [
      { format: TEMPLATE_FORMAT + 1 },
      { kernel_sha256: "d".repeat(64) },
      { rootfs_sha256: "d".repeat(64) },
      { agent_sha256: null },
      { protocol_version: 99 },
      { qemu_version: "8.0.0" },
      { accelerator: "kvm" },
      { vcpu_count: 2 },
      { mem_mib: 1024 },
      { data_disk_mib: 4096 },
      { network: "user" },
    ];
    for (const c of changed) expect(templateKey({ ...parts, ...c })).not.toBe(k);
  });
});

describe("shapeOf", () => {
  const r = {
    backend: "qemu",
    accelerator: "tcg",
    environment: "debian:12",
    vcpu_count: 1,
    mem_mib: 1024,
    network_policy: "off",
  } as WorkspaceRecord;
  test("QEMU machines without a tap network use templates", () => {
    expect(shapeOf(r, {})).toEqual({
      ok: true,
      shape: { environment: "debian:12", accelerator: "tcg", vcpu_count: 1, mem_mib: 1024, network: "off" },
    });
    const egress = shapeOf({ ...r, network_policy: "egress" }, {});
    expect(egress.ok && egress.shape.network).toBe("user");
  });
  test("cold: PYRO_TEMPLATES=off, an allow-list's tap network, other backends", () => {
    expect(shapeOf(r, { PYRO_TEMPLATES: "off" })).toEqual({ ok: false, reason: "PYRO_TEMPLATES=off" });
    const tap = shapeOf({ ...r, network_policy: "egress", allow_cidrs: ["203.0.113.7/32"] }, {});
    expect(tap.ok).toBe(false);
    expect(shapeOf({ ...r, backend: "host", accelerator: null }, {})).toEqual({ ok: false, reason: null });
    // Firecracker: its own templates (templates-firecracker.test.ts), never with a network (a tap)
    expect(
      shapeOf({ ...r, backend: "firecracker", accelerator: "kvm", network_policy: "egress" }, {}).ok,
    ).toBe(false);
  });
});

describe("findTemplate", () => {
  const sha = (data: string | Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

  function publish(home: string, parts: TemplateKeyParts, ram: Uint8Array, state: string): string {
    const key = templateKey(parts);
    const dir = join(templatesDir(home), key);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "ram"), ram);
    writeFileSync(join(dir, "state"), state);
    writeFileSync(
      join(dir, "meta.json"),
      JSON.stringify({
        key,
        parts,
        ram: { bytes: ram.byteLength, sha256: sha(ram) },
        state: { bytes: state.length, sha256: sha(state) },
        made_at: new Date().toISOString(),
        make_ms: 1,
      }),
    );
    return dir;
  }

  test("ready only when both files match their hashes; ram re-hashed after a change", async () => {
    const home = mkdtempSync(join(tmpdir(), "tpl-"));
    const parts = keyParts(installed, shape, "7.2.22");
    expect((await findTemplate(home, parts)).status).toBe("missing");
    const ram = new Uint8Array(4096).fill(7);
    const dir = publish(home, parts, ram, "device-state");
    expect((await findTemplate(home, parts)).status).toBe("ready");
    // the ram verdict is cached by stamp: a rewrite with the same size and mtime is still caught
    const bad = new Uint8Array(4096).fill(8);
    writeFileSync(join(dir, "ram"), bad);
    utimesSync(join(dir, "ram"), 1, 1);
    const r = await findTemplate(home, parts);
    expect(r.status).toBe("broken");
    expect(r.status !== "ready" && r.reason).toContain("ram");
    writeFileSync(join(dir, "ram"), ram);
    expect((await findTemplate(home, parts)).status).toBe("ready");
    // a truncated state fails (the size first)
    truncateSync(join(dir, "state"), 3);
    const t = await findTemplate(home, parts);
    expect(t.status).toBe("broken");
    expect(t.status !== "ready" && t.reason).toContain("state");
  });

  test("another key for the same machine shape is stale, naming the part that differs", async () => {
    const home = mkdtempSync(join(tmpdir(), "tpl-"));
    const old = keyParts(
      { ...installed, manifest: { ...installed.manifest, agent_sha256: "e".repeat(64) } },
      shape,
      "7.2.22",
    );
    publish(home, old, new Uint8Array(16), "s");
    const now = keyParts(installed, shape, "7.2.22");
    const r = await findTemplate(home, now);
    expect(r.status).toBe("stale");
    expect(r.status !== "ready" && r.reason).toContain("agent sha256");
    // a different shape is not "stale", just missing
    expect((await findTemplate(home, { ...now, mem_mib: 2048 })).status).toBe("missing");
  });
});
