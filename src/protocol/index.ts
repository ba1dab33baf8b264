export * from "./connection.ts";
export * from "./errors.ts";
export * from "./frame.ts";
export * from "./messages.ts";
export * from "./queue.ts";
export * from "./version.ts";
