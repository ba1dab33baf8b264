/**
 * Bookkeeping the supervisor does for the calls it relays: the workspace's command history
 * (`history.jsonl`, one line per finished exec) and the record's `command_count` and
 * `last_activity_at`.
 *
 * Invariants:
 * - History numbering continues across stop/start (it is read back at start).
 * - The record is updated before the answer is relayed, so a `list` or `status` right after
 *   a command already sees it; concurrent updates coalesce into one write in flight plus one
 *   more.
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { historyPath } from "../manager/paths.ts";
import { updateRecord } from "../manager/store.ts";

/** Requests that change the workspace: they bump last_activity_at (reads do not). */
const MUTATING = new Set(["exec", "fs.write", "fs.mkdir", "fs.remove", "fs.move", "archive.import"]);

export class Bookkeeping {
  private seq: number;
  private writing: Promise<void> | null = null;
  private writeAgain = false;

  constructor(
    private readonly home: string,
    private readonly id: string,
  ) {
    const path = historyPath(home, id);
    this.seq = existsSync(path)
      ? readFileSync(path, "utf8")
          .split("\n")
          .filter((l) => l.trim()).length
      : 0;
  }

  /** The hook for relayCall's beforeAnswer of `request` (none for requests that change nothing). */
  hookFor(
    request: Record<string, unknown>,
  ): ((result?: Record<string, unknown>) => Promise<void>) | undefined {
    const op = request.op;
    if (typeof op !== "string" || !MUTATING.has(op)) return undefined;
    const startedAt = new Date().toISOString();
    return async (result) => {
      if (op === "exec" && result) this.append(request, startedAt, result);
      await this.writeRecord();
    };
  }

  private append(req: Record<string, unknown>, startedAt: string, result: Record<string, unknown>): void {
    this.seq += 1;
    const entry = {
      seq: this.seq,
      command: req.command ?? null,
      argv: req.argv ?? null,
      cwd: req.cwd ?? null,
      started_at: startedAt,
      exit_code: result.exit_code,
      timed_out: result.timed_out,
      duration_ms: result.duration_ms,
    };
    appendFileSync(historyPath(this.home, this.id), `${JSON.stringify(entry)}\n`);
  }

  /** Coalesced: many concurrent calls cause at most one record write in flight plus one more. */
  private writeRecord(): Promise<void> {
    if (this.writing) {
      this.writeAgain = true;
      return this.writing;
    }
    this.writing = (async () => {
      do {
        this.writeAgain = false;
        await updateRecord(this.home, this.id, (r) => ({
          ...r,
          last_activity_at: new Date().toISOString(),
          command_count: this.seq,
        })).catch(() => {});
      } while (this.writeAgain);
      this.writing = null;
    })();
    return this.writing;
  }
}
