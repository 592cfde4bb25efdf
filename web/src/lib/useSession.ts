"use client";
import { useEffect, useState } from "react";
import { loadSession, onSession, type Session } from "./api";

/** The stored session, kept current across tabs and refreshes; `undefined` until mounted. */
export function useSession(): Session | null | undefined {
  const [s, setS] = useState<Session | null | undefined>(undefined);
  useEffect(() => {
    setS(loadSession());
    const off = onSession(setS);
    const storage = (e: StorageEvent) => e.key === "astrid.session" && setS(loadSession());
    window.addEventListener("storage", storage);
    return () => {
      off();
      window.removeEventListener("storage", storage);
    };
  }, []);
  return s;
}
