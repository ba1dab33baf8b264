/** File transfers as tar: the codec (pure, both sides), safe unpack and lazy pack (fs). */
export type { ByteSource } from "./bytes.ts";
export { fsError } from "./fserror.ts";
export { maybeGunzip } from "./gzip.ts";
export { type PackOptions, packTree } from "./pack.ts";
export { relativeParts, safeMode, tempName, writeAll } from "./safepath.ts";
export {
  encodeTarHeader,
  type ReadTarOptions,
  readTar,
  type TarEntry,
  type TarEntryInfo,
  type TarEntryType,
  type TarHeaderInput,
  type TarWriteEntry,
  tarEnd,
  tarPadding,
  writeTar,
} from "./tar.ts";
export {
  type FileObserver,
  type UnpackObserver,
  type UnpackOptions,
  type UnpackResult,
  unpackTar,
} from "./unpack.ts";
