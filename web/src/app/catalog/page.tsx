"use client";
import Link from "next/link";
import { useEffect, useState } from "react";
import { api, apiFetch } from "@/lib/api";

type Row = Record<string, unknown>;
interface Release { version: string; checksum: string; n_entries: number; created_at: string }

const FIELDS = [
  ["ra", "RA (°)"], ["dec", "Dec (°)"], ["radius", "Radius (°)"], ["classification", "Class"],
  ["mjd_min", "From MJD"], ["mjd_max", "To MJD"], ["mag_min", "Peak mag ≥"], ["mag_max", "Peak mag ≤"],
  ["min_importance", "Importance ≥"],
] as const;
const COLS = ["name", "object_id", "ra", "dec", "classification", "n_detections", "first_mjd", "last_mjd", "peak_mag", "separation_arcsec"];
const input = "w-28 rounded border border-slate-400 bg-white px-1 py-0.5 dark:border-slate-600 dark:bg-slate-900";

export default function CatalogPage() {
  const [form, setForm] = useState<Record<string, string>>({});
  const [rows, setRows] = useState<Row[] | null>(null);
  const [releases, setReleases] = useState<Release[]>([]);
  const [release, setRelease] = useState("");
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api<{ items: Release[] }>("/catalog/releases").then((r) => setReleases(r.items)).catch(() => setReleases([]));
  }, []);
  const query = () => new URLSearchParams(Object.entries(form).filter(([, v]) => v.trim() !== ""));
  const search = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const q = query();
      q.set("limit", "200");
      setRows((await api<{ items: Row[] }>(`/catalog?${q}`)).items);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setRows(null);
    }
  };
  const download = async (format: string) => {
    const q = release ? new URLSearchParams({ release }) : query();
    q.set("format", format);
    const res = await apiFetch(`/catalog/export?${q}`);
    if (!res.ok) { setError(`export refused (${res.status})`); return; }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await res.blob());
    a.download = `astrid-catalog${release ? `-${release}` : ""}.${format === "votable" ? "xml" : format}`;
    a.click();
  };
  const fmt = (v: unknown) => (typeof v === "number" ? String(Number(v.toPrecision(8))) : String(v ?? ""));
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
      <div className="flex flex-wrap items-end gap-2 text-sm">
        <label className="flex flex-col">Release
          <select value={release} onChange={(e) => setRelease(e.target.value)} className={input}>
            <option value="">live catalog (search filters)</option>
            {releases.map((r) => <option key={r.version} value={r.version}>{r.version} · {r.n_entries} entries</option>)}
          </select>
        </label>
        <span className="pb-1">Export:</span>
        {["csv", "votable", "fits", "json"].map((f) => <button key={f} type="button" onClick={() => void download(f)} className="rounded border border-slate-400 px-2 py-0.5 dark:border-slate-600">{f}</button>)}
      </div>
      {release && <p className="text-xs">Release {release}: checksum {releases.find((r) => r.version === release)?.checksum}</p>}
      {error && <p role="alert" className="text-red-700 dark:text-red-400">{error}</p>}
      {rows && (rows.length === 0 ? <p>No entries match.</p> : (
        <div className="overflow-x-auto">
          <table className="min-w-full text-sm" data-testid="catalog-table">
            <thead><tr>{COLS.filter((c) => c in rows[0]).map((c) => <th key={c} scope="col" className="px-2 text-left">{c.replaceAll("_", " ")}</th>)}</tr></thead>
            <tbody>{rows.map((r, i) => (
              <tr key={i} className="border-t border-slate-200 dark:border-slate-800">
                {COLS.filter((c) => c in rows[0]).map((c) => (
                  <td key={c} className="px-2 font-mono">
                    {c === "object_id" && r[c] != null ? <Link className="underline" href={`/object?id=${fmt(r[c])}`}>{fmt(r[c])}</Link> : fmt(r[c])}
                  </td>
                ))}
              </tr>
            ))}</tbody>
          </table>
        </div>
      ))}
    </div>
  );
}
