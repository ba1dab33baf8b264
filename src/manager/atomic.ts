/** Moved to src/base (shared with src/env); kept so manager modules import it from here. */
export { writeFileAtomic } from "../base/atomic.ts";
