/**
 * Authenticated image cache: cutouts are fetched with the bearer header, kept as object URLs
 * and shared between the focused candidate and the prefetch of the next ones, so moving on
 * draws from memory. A missing cutout resolves to `null` (the page shows a placeholder).
 */
import { apiFetch } from "./api";

const cache = new Map<string, Promise<string | null>>();
const MAX = 200;

export function loadImage(path: string): Promise<string | null> {
  let hit = cache.get(path);
  if (!hit) {
    hit = apiFetch(path)
      .then(async (res) => (res.ok ? URL.createObjectURL(await res.blob()) : null))
      .catch(() => {
        cache.delete(path); // a network failure is retried next time
        return null;
      });
    cache.set(path, hit);
    if (cache.size > MAX) {
      const oldest = cache.keys().next().value as string;
      cache.get(oldest)?.then((u) => u && URL.revokeObjectURL(u));
      cache.delete(oldest);
    }
  }
  return hit;
}

/** Start loading (and decoding) images before they are shown. */
export function prefetch(paths: string[]): void {
  for (const p of paths) {
    void loadImage(p).then((url) => {
      if (url) {
        const img = new Image();
        img.src = url;
        void img.decode().catch(() => undefined);
      }
    });
  }
}
