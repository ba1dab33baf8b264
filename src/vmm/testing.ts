/**
 * Test support for the backend tests: temp dirs and socket paths, and servers to stop, all
 * cleaned after each test.
 */
import { afterEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

interface Stoppable {
  stop(force?: boolean): unknown;
}

/**
 * Call at a test file's top level (it registers an afterEach): `dir()` makes a fresh temp dir,
 * `sockPath()` a socket path inside one, `serve(s)` keeps a listener to stop.
 */
export function scratch(prefix: string, sockName = "s.sock") {
  const dirs: string[] = [];
  const servers: Stoppable[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.stop(true);
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const dir = (): string => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
  return {
    dir,
    sockPath: (): string => join(dir(), sockName),
    serve: <T extends Stoppable>(s: T): T => {
      servers.push(s);
      return s;
    },
  };
}
