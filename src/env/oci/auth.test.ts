import { describe, expect, test } from "bun:test";
import { basicHeader, credentialsFromEnv, parseChallenges, redact } from "./auth.ts";

describe("parseChallenges", () => {
  test("bearer with quoted params", () => {
    expect(
      parseChallenges(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"',
      ),
    ).toEqual([
      {
        scheme: "bearer",
        params: {
          realm: "https://auth.example.com/token",
          service: "registry.example.com",
          scope: "repository:a/b:pull,push",
        },
      },
    ]);
  });

  test("several challenges, unquoted values and escapes", () => {
    expect(parseChallenges('Basic realm="Registry \\"x\\"", Bearer realm=https://a/t,service=s')).toEqual([
      { scheme: "basic", params: { realm: 'Registry "x"' } },
      { scheme: "bearer", params: { realm: "https://a/t", service: "s" } },
    ]);
  });

  test("empty and junk headers", () => {
    expect(parseChallenges("")).toEqual([]);
    expect(parseChallenges("Basic")).toEqual([{ scheme: "basic", params: {} }]);
  });
});

describe("credentials", () => {
  test("token wins over username/password; partial settings are ignored", () => {
    expect(
      credentialsFromEnv({
        PYRO_REGISTRY_TOKEN: "t",
        PYRO_REGISTRY_USERNAME: "u",
        PYRO_REGISTRY_PASSWORD: "p",
      }),
    ).toEqual({
      token: "t",
    });
    expect(credentialsFromEnv({ PYRO_REGISTRY_USERNAME: "u", PYRO_REGISTRY_PASSWORD: "p" })).toEqual({
      username: "u",
      password: "p",
    });
    expect(credentialsFromEnv({ PYRO_REGISTRY_USERNAME: "u" })).toBeUndefined();
    expect(credentialsFromEnv({})).toBeUndefined();
  });

  test("redact scrubs every known secret", () => {
    const b64 = basicHeader("u", "secret-pw").slice(6);
    expect(redact(`x secret-pw y ${b64}`, ["secret-pw", b64])).toBe("x *** y ***");
  });
});
