import { html } from "../lib.js";

export function RecurringPage() {
  return html`<h1>Recurring</h1>`;
}
