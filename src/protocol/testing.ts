/** Test support shared by host and guest tests (not part of the runtime surface). */
import { expect } from "bun:test";
import { PyroError } from "./errors.ts";

/** The PyroError `p` rejects with; fails the test when it resolves or rejects with anything else. */
export async function rejection(p: Promise<unknown>): Promise<PyroError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(PyroError);
    return err as PyroError;
  }
  throw new Error("expected a rejection");
}
