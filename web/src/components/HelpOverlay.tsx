"use client";
import { useEffect, useRef } from "react";
import { CLASSIFICATIONS } from "@/lib/curation";

export const KEYS: [string, string][] = [
  ["j / k", "next / previous candidate"],
  ["r", "real"],
  ["b", "bogus"],
  ["s", "skip"],
  ["e", "send to the expert queue"],
  ["c", "comment (Enter sends, Esc cancels)"],
  ["u", "undo your last vote"],
  ["x", "select for a bulk action"],
  ["?", "this help; Esc closes it"],
];

/** The keyboard help, a modal dialog (focus moves into it; Esc or ? closes it). */
export function HelpOverlay({ onClose }: { onClose: () => void }) {
  const ref = useRef<HTMLButtonElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <div className="fixed inset-0 z-40 flex items-center justify-center bg-black/50 p-4" onClick={onClose}>
      <div role="dialog" aria-modal="true" aria-labelledby="help-title" data-testid="help"
        className="max-h-full w-full max-w-lg overflow-auto rounded-lg bg-white p-5 text-slate-900 shadow-xl dark:bg-slate-900 dark:text-slate-100"
        onClick={(e) => e.stopPropagation()}>
        <h2 id="help-title" className="mb-3 text-lg font-semibold">Keyboard shortcuts</h2>
        <table className="w-full text-sm">
          <tbody>
            {KEYS.map(([k, what]) => (
              <tr key={k}><th scope="row" className="w-20 py-0.5 text-left font-mono">{k}</th><td>{what}</td></tr>
            ))}
            {CLASSIFICATIONS.map((c) => (
              <tr key={c.key}><th scope="row" className="py-0.5 text-left font-mono">{c.key}</th><td>{c.label}: {c.name} <span className="text-slate-700 dark:text-slate-300">({c.path})</span></td></tr>
            ))}
          </tbody>
        </table>
        <button ref={ref} type="button" onClick={onClose} className="mt-4 rounded border border-slate-400 px-3 py-1 text-sm">Close</button>
      </div>
    </div>
  );
}
