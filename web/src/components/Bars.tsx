/** Horizontal bars of labelled counts (accessible as a table). */
export function Bars({ data, caption }: { data: Record<string, number>; caption: string }) {
  const entries = Object.entries(data);
  const top = Math.max(1, ...entries.map(([, v]) => v));
  return (
    <table className="w-full text-sm">
      <caption className="mb-1 text-left font-semibold">{caption}</caption>
      <tbody>
        {entries.map(([k, v]) => (
          <tr key={k}>
            <th scope="row" className="w-32 pr-2 text-left font-normal">{k}</th>
            <td className="w-full"><div className="h-3 rounded bg-indigo-500" style={{ width: `${(v / top) * 100}%` }} /></td>
            <td className="pl-2 text-right font-mono">{v}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
