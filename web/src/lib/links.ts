/** External viewers and archives by position (degrees, ICRS). */
export function externalLinks(ra: number, dec: number): { name: string; url: string }[] {
  const r = ra.toFixed(6);
  const d = dec.toFixed(6);
  const sign = dec >= 0 ? "+" : "";
  return [
    { name: "Legacy Survey", url: `https://www.legacysurvey.org/viewer?ra=${r}&dec=${d}&layer=ls-dr10&zoom=16&mark=${r},${d}` },
    { name: "SIMBAD", url: `https://simbad.cds.unistra.fr/simbad/sim-coo?Coord=${r}%20${encodeURIComponent(sign + d)}&Radius=10&Radius.unit=arcsec` },
    { name: "NED", url: `https://ned.ipac.caltech.edu/conesearch?coordinates=${r}d%20${encodeURIComponent(sign + d)}d&radius=0.17&in_csys=Equatorial&in_equinox=J2000` },
    { name: "TNS", url: `https://www.wis-tns.org/search?ra=${r}&decl=${d}&radius=10&coords_unit=arcsec` },
    { name: "Aladin", url: `https://aladin.cds.unistra.fr/AladinLite/?target=${r}%20${encodeURIComponent(sign + d)}&fov=0.05` },
  ];
}
