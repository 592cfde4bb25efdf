import { bandColor, byBand, frame, ticks, type LcPoint } from "@/lib/lightcurve";

/** Magnitude vs MJD per filter: detections filled, forced photometry open, limits as arrows. */
export function LightCurve({ points, width = 640, height = 300 }: { points: LcPoint[]; width?: number; height?: number }) {
  if (points.length === 0) return <p className="text-sm" data-testid="lightcurve-empty">No photometry yet.</p>;
  const fr = frame(points, width, height);
  const groups = [...byBand(points).entries()];
  const [t0, t1] = fr.x.domain;
  const [m0, m1] = fr.y.domain;
  return (
    <figure>
      <svg viewBox={`0 0 ${width} ${height}`} className="h-auto w-full max-w-3xl" role="img" data-testid="lightcurve"
        aria-label={`Light curve: ${points.length} points in ${groups.length} filter(s)`}>
        <g className="text-slate-500" stroke="currentColor" fontSize="11">
          <line x1={fr.x(t0)} x2={fr.x(t1)} y1={height - 40} y2={height - 40} />
          <line x1={40} x2={40} y1={fr.y(m0)} y2={fr.y(m1)} />
          {ticks(t0, t1).map((t) => (
            <text key={`x${t}`} x={fr.x(t)} y={height - 24} textAnchor="middle" fill="currentColor" stroke="none">{t}</text>
          ))}
          {ticks(m0, m1).map((m) => (
            <text key={`y${m}`} x={34} y={fr.y(m) + 4} textAnchor="end" fill="currentColor" stroke="none">{m}</text>
          ))}
          <text x={width / 2} y={height - 6} textAnchor="middle" fill="currentColor" stroke="none">MJD</text>
        </g>
        {groups.map(([band, pts], gi) => {
          const color = bandColor(band, gi);
          return (
            <g key={band} data-band={band} stroke={color} fill={color}>
              {pts.map((p, i) => {
                const x = fr.x(p.mjd);
                const y = fr.y(p.mag);
                if (p.kind === "limit") {
                  // Upper limit: the source is fainter than p.mag, so the arrow points down.
                  const y2 = fr.y(p.mag + 0.3);
                  return (
                    <g key={i} data-kind="limit">
                      <line x1={x - 4} x2={x + 4} y1={y} y2={y} strokeWidth="1.5" />
                      <line x1={x} x2={x} y1={y} y2={y2} strokeWidth="1.5" />
                      <path d={`M${x - 3.5},${y2 - 5} L${x},${y2} L${x + 3.5},${y2 - 5}`} fill="none" strokeWidth="1.5" />
                    </g>
                  );
                }
                return (
                  <g key={i} data-kind={p.kind}>
                    {p.err > 0 && <line x1={x} x2={x} y1={fr.y(p.mag - p.err)} y2={fr.y(p.mag + p.err)} strokeWidth="1" />}
                    <circle cx={x} cy={y} r={3.5} fill={p.kind === "forced" ? "none" : color} strokeWidth="1.5">
                      <title>{`${band} ${p.kind} MJD ${p.mjd.toFixed(3)}: ${p.mag.toFixed(2)} ± ${p.err.toFixed(2)}`}</title>
                    </circle>
                  </g>
                );
              })}
            </g>
          );
        })}
      </svg>
      <figcaption className="flex flex-wrap gap-3 text-xs">
        {groups.map(([band, pts], gi) => (
          <span key={band}><span style={{ color: bandColor(band, gi) }}>●</span> {band} ({pts.length})</span>
        ))}
        <span>● detection · ○ forced photometry · ↓ upper limit</span>
      </figcaption>
    </figure>
  );
}
