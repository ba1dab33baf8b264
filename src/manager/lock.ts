/** Moved to src/base (shared with src/env); kept so manager modules import it from here. */
export { pidAlive, withLock } from "../base/lock.ts";
