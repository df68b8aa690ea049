// Job types as the code labels them (icon and display name), from the job-type catalogue
// (`GET /api/types`): read once, then again at most once a minute while pages ask for it.
import { api } from "./api.js";
import { html, useEffect, useState } from "./lib.js";

const FRESH_MS = 60000;
let loaded = null;
let loadedAt = 0;

function loadTypes() {
  if (!loaded || Date.now() - loadedAt > FRESH_MS) {
    loadedAt = Date.now();
    loaded = api.get("/types").then(
      (data) => new Map(data.types.map((type) => [type.name, type])),
      () => new Map(), // no labels: the pages show the type's name, as without a catalogue
    );
  }
  return loaded;
}

export function useTypes() {
  const [types, setTypes] = useState(() => new Map());
  useEffect(() => {
    let shown = true;
    loadTypes().then((found) => shown && setTypes(found));
    return () => {
      shown = false;
    };
  }, []);
  return types;
}

// A job type's label: its icon and display name, with its name beside them (muted) when the
// display name is another text; just its name when the catalogue has no label for it.
export function TypeName({ type }) {
  const known = useTypes().get(type);
  if (!known || (!known.icon && known.displayName === type)) return html`${type}`;
  const label = known.icon ? `${known.icon} ${known.displayName}` : known.displayName;
  return html`<span class="type-name" title=${known.description || type}>${label}${
    known.displayName !== type && html` <span class="muted mono type-of">${type}</span>`
  }</span>`;
}
