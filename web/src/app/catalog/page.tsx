"use client";
import Link from "next/link";
import { useState } from "react";
import { api, apiFetch, type Page } from "@/lib/api";

type Row = Record<string, unknown>;
const FIELDS = [["ra", "RA (°)"], ["dec", "Dec (°)"], ["radius", "Radius (°)"], ["classification", "Class"], ["mjd_min", "From MJD"], ["mjd_max", "To MJD"], ["mag_max", "Brighter than (mag)"], ["release", "Release"]] as const;
const input = "w-28 rounded border border-slate-400 bg-white px-1 py-0.5 dark:border-slate-600 dark:bg-slate-900";

export default function CatalogPage() {
  const [form, setForm] = useState<Record<string, string>>({});
  const [rows, setRows] = useState<Row[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const query = () => new URLSearchParams(Object.entries(form).filter(([, v]) => v.trim() !== ""));
  const search = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const res = await api<Page<Row> | Row[]>(`/catalog?${query()}`);
      setRows(Array.isArray(res) ? res : res.items);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setRows(null);
    }
  };
  const download = async (format: string) => {
    const q = query();
    q.set("format", format);
    const res = await apiFetch(`/catalog/export?${q}`);
    if (!res.ok) { setError(`export refused (${res.status})`); return; }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await res.blob());
    a.download = `astrid-catalog.${format === "votable" ? "xml" : format}`;
    a.click();
  };
  const cols = rows && rows.length ? Object.keys(rows[0]).filter((k) => typeof rows[0][k] !== "object" || rows[0][k] === null).slice(0, 9) : [];
  return (
    <div className="flex flex-col gap-3">
      <h1 className="text-xl font-semibold">Catalog</h1>
      <form onSubmit={search} className="flex flex-wrap items-end gap-2 text-sm" aria-label="Catalog search">
        {FIELDS.map(([k, label]) => (
          <label key={k} className="flex flex-col">{label}
            <input className={input} value={form[k] ?? ""} onChange={(e) => setForm({ ...form, [k]: e.target.value })} />
          </label>
        ))}
        <button type="submit" className="rounded bg-indigo-700 px-3 py-1 text-white">Search</button>
      </form>
      <div className="flex flex-wrap gap-2 text-sm">Export:
        {["csv", "votable", "fits", "json"].map((f) => <button key={f} type="button" onClick={() => void download(f)} className="rounded border border-slate-400 px-2 dark:border-slate-600">{f}</button>)}
      </div>
      {error && <p role="alert" className="text-red-700 dark:text-red-400">{error}</p>}
      {rows && (rows.length === 0 ? <p>No entries match.</p> : (
        <div className="overflow-x-auto">
          <table className="min-w-full text-sm" data-testid="catalog-table">
            <thead><tr>{cols.map((c) => <th key={c} scope="col" className="px-2 text-left">{c}</th>)}</tr></thead>
            <tbody>{rows.map((r, i) => (
              <tr key={i} className="border-t border-slate-200 dark:border-slate-800">
                {cols.map((c) => <td key={c} className="px-2 font-mono">{c === "object_id" || (c === "id" && r.object_id === undefined) ? <Link className="underline" href={`/object?id=${String(r[c])}`}>{String(r[c])}</Link> : String(r[c] ?? "")}</td>)}
              </tr>
            ))}</tbody>
          </table>
        </div>
      ))}
    </div>
  );
}
