// Text for times, numbers and JSON as the pages show them. Everything here returns strings:
// the pages put them in text nodes, never in HTML.

const numberFormat = new Intl.NumberFormat();

export function count(value) {
  return value === null || value === undefined ? "–" : numberFormat.format(value);
}

// A date-time in the viewer's zone (or `timeZone`), to the second.
export function dateTime(iso, timeZone) {
  if (!iso) return "–";
  const options = { dateStyle: "medium", timeStyle: "medium" };
  if (timeZone) options.timeZone = timeZone;
  try {
    return new Intl.DateTimeFormat(undefined, options).format(new Date(iso));
  } catch {
    return new Date(iso).toISOString();
  }
}

// "12 s ago", "in 3 min": how far `iso` is from now.
export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const magnitude = Math.abs(seconds);
  const [value, unit] =
    magnitude < 60
      ? [seconds, "second"]
      : magnitude < 3600
        ? [Math.round(seconds / 60), "minute"]
        : magnitude < 86400
          ? [Math.round(seconds / 3600), "hour"]
          : [Math.round(seconds / 86400), "day"];
  return new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" }).format(
    value,
    unit,
  );
}

export function duration(startIso, endIso) {
  if (!startIso || !endIso) return "–";
  const ms = new Date(endIso).getTime() - new Date(startIso).getTime();
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

// A JSON document (as the API sends it: text) indented for reading; text that is not JSON is
// returned as it is.
export function prettyJson(text) {
  if (text === null || text === undefined || text === "") return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

// When a job was enqueued, read from its id (UUIDv7: the first 48 bits are Unix milliseconds).
export function idTime(id) {
  const hex = String(id).replaceAll("-", "").slice(0, 12);
  const ms = Number.parseInt(hex, 16);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}

export function shortId(id) {
  return String(id).slice(0, 8);
}
