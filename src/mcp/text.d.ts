// Tool descriptions and instructions imported `with { type: "text" }`, so they are baked into the compiled executable.
declare module "*.txt" {
  const text: string;
  export default text;
}
