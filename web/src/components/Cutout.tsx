"use client";
import { useEffect, useState } from "react";
import { loadImage } from "@/lib/images";

/** One cutout with a crosshair and north-up/east-left marks; a placeholder when missing. */
export function Cutout({ path, label, size = 180 }: { path: string; label: string; size?: number }) {
  const [src, setSrc] = useState<string | null | undefined>(undefined);
  useEffect(() => {
    let live = true;
    if (!path) {
      setSrc(null);
      return;
    }
    setSrc(undefined);
    void loadImage(path).then((u) => live && setSrc(u));
    return () => {
      live = false;
    };
  }, [path]);
  return (
    <figure className="flex flex-col items-center gap-1">
      <div className="relative bg-slate-200 dark:bg-slate-800" style={{ width: size, height: size, maxWidth: "30vw", maxHeight: "30vw" }}>
        {src ? (
          // eslint-disable-next-line @next/next/no-img-element
          <img src={src} alt={`${label} cutout`} className="cutout h-full w-full object-contain" data-testid={`cutout-${label}`} />
        ) : (
          <div className="flex h-full w-full items-center justify-center p-2 text-center text-xs text-slate-700 dark:text-slate-300" data-testid={`cutout-${label}-missing`}>
            {src === null ? `no ${label} cutout` : "loading…"}
          </div>
        )}
        <svg className="pointer-events-none absolute inset-0 h-full w-full" viewBox="0 0 100 100" aria-hidden="true">
          <g stroke="#f59e0b" strokeWidth="0.8">
            <line x1="50" y1="30" x2="50" y2="42" /><line x1="50" y1="58" x2="50" y2="70" />
            <line x1="30" y1="50" x2="42" y2="50" /><line x1="58" y1="50" x2="70" y2="50" />
          </g>
          <text x="4" y="11" fontSize="9" fill="#f59e0b">N↑</text>
          <text x="4" y="96" fontSize="9" fill="#f59e0b">←E</text>
        </svg>
      </div>
      <figcaption className="text-xs uppercase tracking-wide text-slate-700 dark:text-slate-300">{label}</figcaption>
    </figure>
  );
}
