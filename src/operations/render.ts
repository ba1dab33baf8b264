/** Human rendering helpers for the CLI (the --json shapes are the operations' outputs). */
import { publicRecord, type WorkspaceRecord } from "../manager/record.ts";

export function renderWorkspace(r: Record<string, unknown>): string {
  const labels = Object.entries((r.labels as Record<string, string>) ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  const lines = [
    `workspace ${r.workspace_id}${r.name ? ` (${r.name})` : ""}`,
    `  state:       ${r.state}${r.stop_reason ? ` — ${r.stop_reason}` : ""}`,
    `  environment: ${r.environment}`,
    `  runs on:     ${r.backend}${r.accelerator ? `/${r.accelerator}` : ""} (${r.execution_mode})`,
    `  resources:   ${r.vcpu_count} vCPU, ${r.mem_mib} MiB, network ${r.network_policy}`,
    `  created:     ${r.created_at}   last activity: ${r.last_activity_at}`,
    `  expires:     ${r.expires_at ?? "never"}`,
  ];
  if (labels) lines.push(`  labels:      ${labels}`);
  const secrets = (r.secrets as string[] | undefined) ?? [];
  if (secrets.length) lines.push(`  secrets:     ${secrets.join(", ")} (use with --secret-env NAME)`);
  return lines.join("\n");
}

export function renderTable(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  "))
    .join("\n");
}

export const pub = (r: WorkspaceRecord) => publicRecord(r);

/** A directory listing (live `file list` and offline `disk list` alike). */
export function renderListing(out: Record<string, unknown>): string {
  const entries = out.entries as Array<Record<string, unknown>>;
  const rows = entries.map((e) => [
    String(e.mode),
    String(e.artifact_type).padEnd(9),
    String(e.size_bytes),
    `${e.path}${e.link_target ? ` -> ${e.link_target}` : ""}`,
  ]);
  return (rows.length ? renderTable(rows) : "(empty)") + (out.truncated ? "\n(listing truncated)" : "");
}

/** A file read as the CLI prints it: the text with a truncation note, or base64 marked as such. */
export function renderContent(out: {
  content: string;
  encoding: string;
  truncated: boolean;
  bytes_read: number;
  size_bytes: number;
}): string {
  const note = out.truncated ? `\n[truncated: ${out.bytes_read} of ${out.size_bytes} bytes]` : "";
  return `${out.encoding === "utf8" ? out.content : `[binary, base64]\n${out.content}`}${note}`;
}

/** `--content-only`: the file's bytes exactly as read, nothing else. */
export const contentOnlyFlag = {
  "content-only": {
    description: "Print only the raw content (bytes as read, no note).",
    print: (out: { content: string; encoding: string }): Uint8Array =>
      Buffer.from(out.content, out.encoding === "base64" ? "base64" : "utf8"),
  },
};
