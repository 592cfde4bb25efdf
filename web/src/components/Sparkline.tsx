/** A tiny magnitude history (brighter up); an em dash when there is none. */
export function Sparkline({ values, width = 90, height = 22 }: { values: number[]; width?: number; height?: number }) {
  if (values.length < 2) return <span>—</span>;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  const pts = values.map((v, i) => `${(i / (values.length - 1)) * (width - 2) + 1},${((v - lo) / span) * (height - 2) + 1}`).join(" ");
  return (
    <svg width={width} height={height} role="img" aria-label={`magnitude history, ${values.length} points`}>
      <polyline points={pts} fill="none" stroke="currentColor" strokeWidth="1.5" />
    </svg>
  );
}
