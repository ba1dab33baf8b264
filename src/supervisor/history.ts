/**
 * The bookkeeping only the supervisor can do, because only it sees every command: the
 * workspace's command history (`history.jsonl`, one line per exec that returned a result)
 * and the record's `command_count`. Activity time is not kept here: invoke()
 * (src/operations/invoke.ts) bumps `last_activity_at` for every operation whose record says
 * `mutates: true`, on every face, so no list of agent requests has to agree with the table.
 *
 * Invariants:
 * - History numbering continues across stop/start (it is read back at start).
 * - Secret values in a command, its argv or cwd are redacted before the line is written.
 * - `command_count` is written before the exec's result is relayed, so `status` right after a
 *   command already counts it; concurrent writes coalesce into one in flight plus one more.
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { historyPath } from "../manager/paths.ts";
import type { Redactor } from "../manager/redact.ts";
import { updateRecord } from "../manager/store.ts";

export class CommandHistory {
  private seq: number;
  private writing: Promise<void> | null = null;
  private writeAgain = false;

  constructor(
    private readonly home: string,
    private readonly id: string,
    private readonly redactor: Redactor | null = null,
  ) {
    const path = historyPath(home, id);
    this.seq = existsSync(path)
      ? readFileSync(path, "utf8")
          .split("\n")
          .filter((l) => l.trim()).length
      : 0;
  }

  /** relayCall's beforeAnswer for `request`: records an exec's result; nothing for other requests. */
  hookFor(
    request: Record<string, unknown>,
  ): ((result: Record<string, unknown>) => Promise<void>) | undefined {
    if (request.op !== "exec") return undefined;
    const startedAt = new Date().toISOString();
    return (result) => {
      this.append(request, startedAt, result);
      return this.writeCount();
    };
  }

  private append(req: Record<string, unknown>, startedAt: string, result: Record<string, unknown>): void {
    this.seq += 1;
    const r = this.redactor;
    const entry = {
      seq: this.seq,
      command: r ? r.value(req.command ?? null) : (req.command ?? null),
      argv: r ? r.value(req.argv ?? null) : (req.argv ?? null),
      cwd: r ? r.value(req.cwd ?? null) : (req.cwd ?? null),
      started_at: startedAt,
      exit_code: result.exit_code,
      timed_out: result.timed_out,
      duration_ms: result.duration_ms,
    };
    appendFileSync(historyPath(this.home, this.id), `${JSON.stringify(entry)}\n`);
  }

  /** Coalesced: many concurrent commands cause at most one record write in flight plus one more. */
  private writeCount(): Promise<void> {
    if (this.writing) {
      this.writeAgain = true;
      return this.writing;
    }
    this.writing = (async () => {
      do {
        this.writeAgain = false;
        await updateRecord(this.home, this.id, (r) => ({ ...r, command_count: this.seq })).catch(() => {});
      } while (this.writeAgain);
      this.writing = null;
    })();
    return this.writing;
  }
}
