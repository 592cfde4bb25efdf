/** The scalar fields of an API object as a definition list (text only: values are never HTML). */
export function Facts({ data, skip = [] }: { data: Record<string, unknown>; skip?: string[] }) {
  const rows = Object.entries(data).filter(([k, v]) => !skip.includes(k) && v !== null && typeof v !== "object");
  return (
    <dl className="grid grid-cols-2 gap-x-4 gap-y-1 text-sm sm:grid-cols-3 lg:grid-cols-4">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt className="text-slate-700 dark:text-slate-300">{k.replaceAll("_", " ")}</dt>
          <dd className="break-words font-mono">{typeof v === "number" ? String(Number(v.toPrecision(8))) : String(v)}</dd>
        </div>
      ))}
    </dl>
  );
}
