/** How file content is labelled for clients (shared by live reads and offline disk reads). */

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** "utf8" if the bytes are UTF-8 without NULs, allowing a character cut at a window edge. */
export function encodingHint(bytes: Uint8Array, cutEnd: boolean, cutStart: boolean): "utf8" | "binary" {
  if (bytes.includes(0)) return "binary";
  let start = 0;
  // skip continuation bytes (10xxxxxx) of a character that began before the window
  if (cutStart) while (start < 3 && start < bytes.length && (bytes[start]! & 0xc0) === 0x80) start++;
  for (let trim = 0; trim <= (cutEnd ? 3 : 0) && trim <= bytes.length - start; trim++) {
    try {
      utf8.decode(bytes.subarray(start, bytes.length - trim));
      return "utf8";
    } catch {
      // try trimming one more byte of a character cut at the end
    }
  }
  return "binary";
}
