"use client";
import { useEffect, useState } from "react";
import { probeApi } from "@/lib/api";
import { backoffS, health, onHealth, reportUp, startProbe, type Health } from "@/lib/health";

/** "The API cannot be reached" on every page while it is down, with the next retry and a button. */
export function ApiBanner() {
  const [h, setH] = useState<Health>(health());
  useEffect(() => {
    const off = onHealth(setH);
    const stop = startProbe(probeApi);
    return () => { off(); stop(); };
  }, []);
  if (h.up) return null;
  const retry = async () => { if (await probeApi()) reportUp(); };
  return (
    <div role="alert" data-testid="api-down"
      className="flex flex-wrap items-center gap-3 bg-red-100 px-3 py-2 text-sm text-red-900 dark:bg-red-950 dark:text-red-100">
      <span>
        The AstrID API cannot be reached ({h.reason}). Nothing you did is lost: it is kept in this
        browser and sent when the API is back. Next check in {backoffS(h.attempts)} s.
      </span>
      <button type="button" onClick={() => void retry()}
        className="rounded border border-red-900 px-2 py-0.5 dark:border-red-100">
        Retry now
      </button>
    </div>
  );
}
