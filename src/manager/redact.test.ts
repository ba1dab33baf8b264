import { describe, expect, test } from "bun:test";
import { PyroError } from "../protocol/errors.ts";
import { Redactor, secretForms } from "./redact.ts";

const VALUE = "tok-3f9a1c7e-s3cr3t+/=?&x y";
const r = Redactor.of([{ name: "TOKEN", value: VALUE }]) as Redactor;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const b64 = (s: string) => Buffer.from(s).toString("base64");
const b64url = (s: string) => Buffer.from(s).toString("base64url");

describe("Redactor", () => {
  test("no secrets: no redactor", () => {
    expect(Redactor.of([])).toBeNull();
  });

  test("the value and its encodings become [REDACTED:NAME]", () => {
    const forms = [
      VALUE,
      b64(VALUE),
      b64(`${VALUE}\n`),
      b64url(VALUE),
      b64url(`${VALUE}\n`),
      encodeURIComponent(VALUE),
      encodeURIComponent(VALUE).replaceAll("%20", "+"),
      JSON.stringify(VALUE).slice(1, -1),
    ];
    for (const f of forms) {
      // probe: the form is really in the input
      const text = `before ${f} after`;
      expect(text).toContain(f);
      expect(r.text(text)).toBe("before [REDACTED:TOKEN] after");
    }
  });

  test("the value inside longer base64 text is caught at every alignment", () => {
    for (const prefix of ["", "a", "ab", "abc", "TOKEN="]) {
      const encoded = b64(`${prefix}${VALUE} and more`);
      const out = r.text(encoded);
      expect(out).toContain("[REDACTED:TOKEN]");
      // what is left cannot be decoded back to the value
      expect(Buffer.from(out.replace("[REDACTED:TOKEN]", ""), "base64").toString()).not.toContain(VALUE);
    }
  });

  test("binary output around a value is kept byte for byte", () => {
    const bin = new Uint8Array([0, 255, 1, ...enc(VALUE), 254, 0]);
    const out = r.bytes(bin);
    expect([...out]).toEqual([0, 255, 1, ...enc("[REDACTED:TOKEN]"), 254, 0]);
  });

  test("a stream catches a value split across chunks, at every split point", () => {
    const text = `x${VALUE}y${b64(`${VALUE}\n`)}z`;
    const bytes = enc(text);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const s = r.stream();
      const out = [s.push(bytes.subarray(0, cut)), s.push(bytes.subarray(cut)), s.flush()];
      expect(out.map(dec).join("")).toBe("x[REDACTED:TOKEN]y[REDACTED:TOKEN]z");
    }
  });

  test("a stream byte by byte; output that cannot start a value is not held back", () => {
    const s = r.stream();
    let out = "";
    for (const b of enc(`ab ${VALUE} cd`)) out += dec(s.push(new Uint8Array([b])));
    expect(out + dec(s.flush())).toBe("ab [REDACTED:TOKEN] cd");
    const t = r.stream();
    expect(dec(t.push(enc("hello world\n")))).toBe("hello world\n");
    // a prefix of the value is held until it is decided, then released at the end
    expect(dec(t.push(enc("tok-3f")))).toBe("");
    expect(dec(t.flush())).toBe("tok-3f");
  });

  test("longest form first, several secrets, errors and JSON values", () => {
    const two = Redactor.of([
      { name: "A", value: "abcdef123" },
      { name: "B", value: "abcdef123456" },
    ]) as Redactor;
    expect(two.text("abcdef123456 abcdef123")).toBe("[REDACTED:B] [REDACTED:A]");
    const err = r.error(
      new PyroError("FILE_NOT_FOUND", `no ${VALUE}`, {
        details: { path: `/workspace/${VALUE}` },
        hint: VALUE,
      }),
    );
    expect(err.code).toBe("FILE_NOT_FOUND");
    expect(JSON.stringify(err.toJSON())).not.toContain(VALUE);
    expect(err.message).toBe("no [REDACTED:TOKEN]");
    expect(r.value({ a: [VALUE, 1, null], b: { c: VALUE } })).toEqual({
      a: ["[REDACTED:TOKEN]", 1, null],
      b: { c: "[REDACTED:TOKEN]" },
    });
  });

  test("forms: short values get no alignment cores (they would match innocent text)", () => {
    expect(secretForms("ab").every((f) => f.length >= 2)).toBe(true);
    expect(Redactor.of([{ name: "S", value: "ab" }])?.text("YWJj")).toBe("YWJj");
  });
});
