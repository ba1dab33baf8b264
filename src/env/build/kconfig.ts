/**
 * Kconfig fragment parsing and the post-olddefconfig check. tinyconfig + olddefconfig
 * silently drops any symbol whose dependencies are not met, so after the merge every
 * symbol the fragment names must hold exactly the requested value, or the build fails.
 */

/** Symbol name → value; `null` means "is not set" (=n). */
export type KconfigValues = Map<string, string | null>;

const SET = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/;
const UNSET = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/;

export function parseKconfig(text: string): KconfigValues {
  const values: KconfigValues = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const set = SET.exec(line);
    if (set) {
      // `=n` is spelled "is not set" by kconfig; treat both the same.
      values.set(set[1]!, set[2] === "n" ? null : set[2]!);
      continue;
    }
    const unset = UNSET.exec(line);
    if (unset) values.set(unset[1]!, null);
  }
  return values;
}

export interface KconfigMismatch {
  symbol: string;
  wanted: string | null;
  got: string | null;
}

/** Every symbol of `fragment` must have the same value in `config` (absent counts as unset). */
export function checkKconfig(fragment: string, config: string): KconfigMismatch[] {
  const got = parseKconfig(config);
  const mismatches: KconfigMismatch[] = [];
  for (const [symbol, wanted] of parseKconfig(fragment)) {
    const actual = got.get(symbol) ?? null;
    if (actual !== wanted) mismatches.push({ symbol, wanted, got: actual });
  }
  return mismatches;
}

export function describeMismatch(m: KconfigMismatch): string {
  const show = (v: string | null) => (v === null ? "unset" : v);
  return `${m.symbol}: wanted ${show(m.wanted)}, got ${show(m.got)}`;
}
