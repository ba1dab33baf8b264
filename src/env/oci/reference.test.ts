import { describe, expect, test } from "bun:test";
import { PyroError } from "../../protocol/errors.ts";
import { formatReference, isLoopbackHost, parseReference } from "./reference.ts";

const D = `sha256:${"ab".repeat(32)}`;

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof PyroError ? err.code : "NOT_PYRO";
  }
  return undefined;
}

describe("parseReference", () => {
  test("host with port, nested repository, tag", () => {
    expect(parseReference("localhost:5000/pyro/debian:12-1")).toEqual({
      registry: "localhost:5000",
      repository: "pyro/debian",
      tag: "12-1",
      scheme: "http",
    });
  });

  test("digest reference over https", () => {
    const ref = parseReference(`registry.example.com/ns/env@${D}`);
    expect(ref).toEqual({
      registry: "registry.example.com",
      repository: "ns/env",
      digest: D,
      scheme: "https",
    });
    expect(formatReference(ref)).toBe(`registry.example.com/ns/env@${D}`);
  });

  test("tag and digest together keep both", () => {
    const ref = parseReference(`ghcr.io/o/env:1@${D}`);
    expect(ref.tag).toBe("1");
    expect(ref.digest).toBe(D);
  });

  test("tag defaults to latest", () => {
    expect(parseReference("127.0.0.1:5000/env").tag).toBe("latest");
    expect(parseReference(`127.0.0.1:5000/env@${D}`).tag).toBeUndefined();
  });

  test("host lowercased, IPv6 and ports", () => {
    expect(parseReference("Registry.Example.COM/a").registry).toBe("registry.example.com");
    const v6 = parseReference("[::1]:5000/pyro/env:1");
    expect(v6).toMatchObject({ registry: "[::1]:5000", repository: "pyro/env", tag: "1", scheme: "http" });
    expect(parseReference("[2001:db8::1]/env").scheme).toBe("https");
  });

  test("no registry: resolved against the default, which may carry a namespace", () => {
    expect(parseReference("debian:12", "localhost:5000/pyro")).toMatchObject({
      registry: "localhost:5000",
      repository: "pyro/debian",
      tag: "12",
    });
    expect(parseReference("ns/debian", "reg.example.com/")).toMatchObject({
      registry: "reg.example.com",
      repository: "ns/debian",
    });
  });

  test("a default registry with a scheme is refused clearly", () => {
    expect(() => parseReference("debian:12", "http://localhost:5000")).toThrow(/without a scheme/);
  });

  test("no registry and no default is a REGISTRY_ERROR naming PYRO_REGISTRY", () => {
    try {
      parseReference("debian:12");
      throw new Error("expected failure");
    } catch (err) {
      expect(err).toBeInstanceOf(PyroError);
      expect((err as PyroError).code).toBe("REGISTRY_ERROR");
      expect((err as PyroError).message).toContain("PYRO_REGISTRY");
    }
  });

  test.each([
    "",
    "   ",
    "localhost:5000/",
    "localhost:5000/Upper/case",
    "localhost:5000/a//b",
    "localhost:5000/a:bad tag",
    "localhost:5000/a:-x",
    `localhost:5000/a:${"x".repeat(129)}`,
    "localhost:5000/a@sha256:abc",
    `localhost:5000/a@md5:${"a".repeat(32)}`,
    "localhost:99999/a",
    "local_host:5000/a",
    "[::1/a",
    "localhost:5000/a-/b",
    "localhost:5000/a..b",
  ])("rejects %p with INVALID_INPUT", (input) => {
    expect(code(() => parseReference(input, "localhost:5000"))).toBe("INVALID_INPUT");
  });
});

describe("isLoopbackHost / scheme", () => {
  test.each([
    ["localhost", true],
    ["localhost:5000", true],
    ["127.0.0.1", true],
    ["127.255.0.9:80", true],
    ["[::1]", true],
    ["[::1]:5000", true],
    ["128.0.0.1", false],
    ["10.0.0.1:5000", false],
    ["localhost.example.com", false],
    ["127.0.0.1.nip.io", false],
    ["[::2]", false],
    ["registry.example.com", false],
  ])("%p → %p", (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
    expect(parseReference(`${host}/env`).scheme).toBe(loopback ? "http" : "https");
  });
});
