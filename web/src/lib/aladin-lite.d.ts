// aladin-lite ships no TypeScript types; the sky map uses a small part of its API.
declare module "aladin-lite" {
  const A: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  export default A;
}
