import { describe, expect, test } from "bun:test";
import { checkKconfig, describeMismatch, parseKconfig } from "./kconfig.ts";
import { KERNEL_FRAGMENT } from "./kernel.ts";

describe("parseKconfig", () => {
  test("reads set, string and unset symbols; ignores comments", () => {
    const v = parseKconfig(
      '# a comment\nCONFIG_A=y\nCONFIG_S="-pyro"\n# CONFIG_B is not set\nCONFIG_N=n\n\n  CONFIG_C=m  \n',
    );
    expect([...v]).toEqual([
      ["CONFIG_A", "y"],
      ["CONFIG_S", '"-pyro"'],
      ["CONFIG_B", null],
      ["CONFIG_N", null],
      ["CONFIG_C", "m"],
    ]);
  });
});

describe("checkKconfig", () => {
  const fragment = 'CONFIG_PVH=y\nCONFIG_LOCALVERSION="-pyro"\n# CONFIG_MODULES is not set\n';

  test("passes when every symbol holds its value (absent counts as unset)", () => {
    expect(checkKconfig(fragment, 'CONFIG_PVH=y\nCONFIG_LOCALVERSION="-pyro"\nCONFIG_OTHER=y\n')).toEqual([]);
  });

  test("reports a symbol olddefconfig dropped", () => {
    const m = checkKconfig(fragment, 'CONFIG_LOCALVERSION="-pyro"\n# CONFIG_PVH is not set\n');
    expect(m).toEqual([{ symbol: "CONFIG_PVH", wanted: "y", got: null }]);
    expect(describeMismatch(m[0]!)).toBe("CONFIG_PVH: wanted y, got unset");
  });

  test("reports a wrong value and a symbol that should be unset", () => {
    const m = checkKconfig(fragment, 'CONFIG_PVH=y\nCONFIG_LOCALVERSION=""\nCONFIG_MODULES=y\n');
    expect(m.map((x) => x.symbol)).toEqual(["CONFIG_LOCALVERSION", "CONFIG_MODULES"]);
  });
});

describe("the pyro fragment", () => {
  const v = parseKconfig(KERNEL_FRAGMENT);
  test("asks for both device discovery paths, PVH and the guest channels", () => {
    for (const s of [
      "PVH",
      "ACPI",
      "PCI",
      "X86_MPPARSE",
      "VIRTIO_MMIO",
      "VIRTIO_MMIO_CMDLINE_DEVICES",
      "VIRTIO_BLK",
      "VIRTIO_CONSOLE",
      "VIRTIO_NET",
      "VIRTIO_VSOCKETS",
      "EXT4_FS",
      "OVERLAY_FS",
      "DEVTMPFS_MOUNT",
      "IP_PNP",
      "UNIX98_PTYS",
    ]) {
      expect(v.get(`CONFIG_${s}`)).toBe("y");
    }
    expect(v.get("CONFIG_LOCALVERSION")).toBe('"-pyro"');
    expect(v.get("CONFIG_MODULES")).toBeNull();
    expect(v.get("CONFIG_BLK_DEV_INITRD")).toBeNull();
  });
});
