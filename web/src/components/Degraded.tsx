/** The degraded banner of the operations pages: one line per reason; nothing when healthy. */
export function Degraded({ reasons }: { reasons: string[] }) {
  if (reasons.length === 0) return null;
  return (
    <div role="alert" data-testid="degraded" className="rounded border border-amber-600 bg-amber-100 p-2 text-sm text-amber-950 dark:bg-amber-950 dark:text-amber-100">
      <p className="font-semibold">Degraded</p>
      <ul className="list-disc pl-5">{reasons.map((r) => <li key={r}>{r}</li>)}</ul>
    </div>
  );
}
