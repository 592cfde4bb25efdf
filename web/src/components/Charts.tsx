import { columnHeights, seriesPoints } from "@/lib/charts";

/** Vertical columns of counts per label (a small SVG plus a table for screen readers). */
export function Columns({ data, caption, testid }: { data: [string, number][]; caption: string; testid?: string }) {
  const W = 320, H = 110, base = 96;
  const heights = columnHeights(data.map(([, v]) => v), base - 6);
  const bw = data.length ? Math.max(2, Math.min(28, (W - 8) / data.length - 2)) : 0;
  return (
    <figure data-testid={testid} data-n={data.length}>
      <figcaption className="mb-1 font-semibold">{caption}</figcaption>
      {data.length === 0 ? <p className="text-sm">Nothing yet.</p> : (
        <>
          <svg viewBox={`0 0 ${W} ${H}`} className="w-full" aria-hidden="true">
            {data.map(([k, v], i) => (
              <rect key={k} x={4 + i * (bw + 2)} y={base - heights[i]} width={bw} height={heights[i]} className="fill-indigo-500"><title>{`${k}: ${v}`}</title></rect>
            ))}
            <line x1="0" x2={W} y1={base} y2={base} className="stroke-slate-400" />
            <text x="2" y={H - 2} className="fill-current text-[10px]">{data[0][0]}</text>
            <text x={W - 2} y={H - 2} textAnchor="end" className="fill-current text-[10px]">{data[data.length - 1][0]}</text>
          </svg>
          <table className="sr-only"><caption>{caption}</caption><tbody>{data.map(([k, v]) => <tr key={k}><th scope="row">{k}</th><td>{v}</td></tr>)}</tbody></table>
        </>
      )}
    </figure>
  );
}

/** A line of values in [0, 1] over labelled steps (e.g. precision per night). */
export function FractionLine({ data, caption, testid }: { data: { label: string; value: number; n: number }[]; caption: string; testid?: string }) {
  const W = 320, H = 110;
  const pts = seriesPoints(data.map((d) => d.value), { width: W, height: H - 14, pad: 6 }, 0, 1);
  return (
    <figure data-testid={testid} data-n={data.length}>
      <figcaption className="mb-1 font-semibold">{caption}</figcaption>
      {data.length === 0 ? <p className="text-sm">No curated labels yet.</p> : (
        <>
          <svg viewBox={`0 0 ${W} ${H}`} className="w-full" aria-hidden="true">
            <line x1="6" x2={W - 6} y1="6" y2="6" className="stroke-slate-300 dark:stroke-slate-700" strokeDasharray="3 3" />
            <line x1="6" x2={W - 6} y1={H - 20} y2={H - 20} className="stroke-slate-400" />
            <polyline points={pts.map(([x, y]) => `${x},${y}`).join(" ")} fill="none" className="stroke-emerald-500" strokeWidth="2" />
            {pts.map(([x, y], i) => <circle key={data[i].label} cx={x} cy={y} r="3" className="fill-emerald-500"><title>{`${data[i].label}: ${(data[i].value * 100).toFixed(0)} % of ${data[i].n}`}</title></circle>)}
            <text x="8" y="16" className="fill-current text-[10px]">1.0</text>
            <text x="2" y={H - 2} className="fill-current text-[10px]">{data[0].label}</text>
            <text x={W - 2} y={H - 2} textAnchor="end" className="fill-current text-[10px]">{data[data.length - 1].label}</text>
          </svg>
          <table className="sr-only"><caption>{caption}</caption><tbody>{data.map((d) => <tr key={d.label}><th scope="row">{d.label}</th><td>{d.value.toFixed(2)} (n={d.n})</td></tr>)}</tbody></table>
        </>
      )}
    </figure>
  );
}
