import { html } from "../lib.js";

export function JobPage({ route }) {
  return html`<h1>Job ${route.params.id}</h1>`;
}
