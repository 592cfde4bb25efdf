/** Static export: `npm run build` writes plain files to out/, which `astrid serve` serves at `/`. */
const nextConfig = {
  output: "export",
  trailingSlash: false,
  images: { unoptimized: true },
  reactStrictMode: true,
  poweredByHeader: false,
};
export default nextConfig;
