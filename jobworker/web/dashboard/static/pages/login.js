// The login page: username and password against the admin API (which throttles failures and
// sets the session cookie).
import { api } from "../api.js";
import { html, useState } from "../lib.js";

export function LoginPage({ onLogin }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onLogin(await api.post("/login", { username, password }));
    } catch (failure) {
      setError(
        failure.status === 429
          ? `Too many failed logins: ${failure.message}`
          : failure.status === 401
            ? "Wrong username or password."
            : failure.message,
      );
      setPassword("");
    } finally {
      setBusy(false);
    }
  };

  return html`
    <main class="login">
      <form class="card" onSubmit=${submit} aria-labelledby="login-title">
        <h1 id="login-title">jobworker</h1>
        <label>Username
          <input name="username" autocomplete="username" required value=${username}
            onInput=${(e) => setUsername(e.currentTarget.value)} />
        </label>
        <label>Password
          <input name="password" type="password" autocomplete="current-password" required
            value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} />
        </label>
        ${error && html`<p class="notice error" role="alert">${error}</p>`}
        <button type="submit" class="primary" disabled=${busy}>Log in</button>
      </form>
    </main>
  `;
}
