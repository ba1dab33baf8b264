/** Teardown as a stack: every acquired resource pushes its undo; run() undoes in reverse, once. */
export class Teardown {
  private steps: Array<{ label: string; fn: () => unknown }> = [];
  private ran = false;

  push(label: string, fn: () => unknown): void {
    this.steps.push({ label, fn });
  }

  /** Forget everything pushed so far (the caller now owns those resources). */
  release(): void {
    this.steps = [];
  }

  async run(): Promise<string[]> {
    if (this.ran) return [];
    this.ran = true;
    const failures: string[] = [];
    for (const step of this.steps.reverse()) {
      try {
        await step.fn();
      } catch (err) {
        failures.push(`${step.label}: ${(err as Error).message}`);
      }
    }
    this.steps = [];
    return failures;
  }
}
