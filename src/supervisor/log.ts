/** The supervisor's log: stderr, which its launcher points at the workspace's supervisor log. */
export function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString()} ${msg}\n`);
}
