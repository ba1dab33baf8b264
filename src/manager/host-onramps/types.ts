/**
 * What every chat-client ("host") module of the onramps provides. A module knows where its
 * client keeps MCP servers (the client's documented locations, from the environment so tests
 * point HOME anywhere), how to find pyro's entry in such a file, and how to render the file
 * with pyro's entry set while keeping every other key. Renderers are pure text → text.
 *
 * Invariants: `render` never drops or changes anything but pyro's one entry at the scope
 * given; it throws a PyroError (INVALID_INPUT, naming the file) rather than rewrite a file it
 * cannot reproduce faithfully (unparseable, or JSON with comments).
 */
import type { Env } from "../../base/paths.ts";

export const HOST_IDS = ["claude-code", "codex", "opencode"] as const;
export type HostId = (typeof HOST_IDS)[number];

/** The name pyro registers under in every client. */
export const SERVER_NAME = "pyro";

/** How a client starts pyro's MCP server: an executable and its arguments. */
export interface Registration {
  command: string;
  args: string[];
}

/** One registration of pyro found in a client's config file. */
export interface Found {
  path: string;
  /** where in the file: "user", or "project:/abs/dir" (Claude Code's local scope) */
  scope: string;
  registration: Registration;
}

export interface HostModule {
  id: HostId;
  /** the client's CLI on PATH */
  cli: string;
  /** the client's documentation pages this module follows (docs/host-onramps.md cites them) */
  docs: string[];
  /** Config files the client reads MCP servers from, in its documented order. */
  configFiles(env: Env): string[];
  /** The file the client's own `add` command writes (for connect's report). */
  userConfigFile(env: Env): string;
  /** pyro's entries in one config file's text (`path` names it in errors). */
  find(text: string, path: string): Found[];
  /** The file's text with pyro's entry set at `scope` (default "user"), all else kept. */
  render(text: string | null, reg: Registration, path: string, scope?: string): string;
  /** The client's own command that registers pyro at user scope. */
  addCommand?(reg: Registration): string[];
  /** The client's own command that removes pyro's user-scope entry (when `add` will not replace it). */
  removeCommand?(): string[];
}
