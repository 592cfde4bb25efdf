import type { Bin } from "@/lib/ops";

/** Small stacked bars of processed (indigo) and failed (red) tasks per bin, oldest left. */
export function TrendBars({ bins, label, width = 160, height = 36 }: { bins: Bin[]; label: string; width?: number; height?: number }) {
  const top = Math.max(1, ...bins.map((b) => b.processed + b.failed));
  const w = width / Math.max(1, bins.length);
  const processed = bins.reduce((a, b) => a + b.processed, 0);
  const failed = bins.reduce((a, b) => a + b.failed, 0);
  return (
    <svg width={width} height={height} role="img" aria-label={`${label}: ${processed} processed, ${failed} failed`} className="text-indigo-600 dark:text-indigo-400">
      <line x1={0} x2={width} y1={height - 0.5} y2={height - 0.5} stroke="currentColor" strokeOpacity={0.3} />
      {bins.map((b, i) => {
        const hp = (b.processed / top) * (height - 2);
        const hf = (b.failed / top) * (height - 2);
        return (
          <g key={i}>
            <rect x={i * w + 0.5} y={height - 1 - hp} width={Math.max(1, w - 1)} height={hp} fill="currentColor" />
            <rect x={i * w + 0.5} y={height - 1 - hp - hf} width={Math.max(1, w - 1)} height={hf} className="fill-red-600 dark:fill-red-400" />
          </g>
        );
      })}
    </svg>
  );
}
