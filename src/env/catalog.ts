/**
 * The environment catalog: recipes are data (rootfs/recipes/*.json), imported here so the
 * compiled pyro executable carries them. A recipe names the Debian packages of an
 * environment; the build driver (src/env/build) turns it into an ext4 root filesystem.
 */
import debian12 from "../../rootfs/recipes/debian-12.json";
import debian12Base from "../../rootfs/recipes/debian-12-base.json";
import debian12Build from "../../rootfs/recipes/debian-12-build.json";

export interface EnvironmentRecipe {
  /** Catalog name, e.g. "debian:12". */
  readonly name: string;
  /** Recipe version: bump when the recipe's output changes without its package list changing. */
  readonly version: string;
  readonly description: string;
  /** Debian suite given to debootstrap. */
  readonly suite: string;
  /** Packages passed to `debootstrap --variant=minbase --include=`. */
  readonly packages: readonly string[];
}

export const DEFAULT_ENVIRONMENT = "debian:12";

export const CATALOG: readonly EnvironmentRecipe[] = Object.freeze(
  [debian12, debian12Base, debian12Build].map((r) =>
    Object.freeze({ ...r, packages: Object.freeze([...r.packages]) }),
  ),
);

export function findRecipe(name: string): EnvironmentRecipe | undefined {
  return CATALOG.find((r) => r.name === name);
}
