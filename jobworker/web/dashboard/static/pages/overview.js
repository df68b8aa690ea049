import { html } from "../lib.js";

export function OverviewPage() {
  return html`<h1>Overview</h1>`;
}
