// Files imported `with { type: "text" }` so they are baked into the compiled executable.
declare module "*.fragment" {
  const text: string;
  export default text;
}
declare module "*/pyro-init" {
  const text: string;
  export default text;
}
