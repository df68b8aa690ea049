// The dashboard's shell: the session (or the login page), the navigation, and the page the URL
// names. Each page is a module under pages/ that takes { route, session }.
import { ApiError, BASE, api, useSessionToken } from "./api.js";
import { ErrorNotice, Loading } from "./components.js";
import { html, render, useCallback, useEffect, useState } from "./lib.js";
import { JobPage } from "./pages/job.js";
import { JobsPage } from "./pages/jobs.js";
import { LoginPage } from "./pages/login.js";
import { OverviewPage } from "./pages/overview.js";
import { QueuesPage } from "./pages/queues.js";
import { RecurringPage } from "./pages/recurring.js";
import { Link, href, navigate, useRoute } from "./router.js";

const PAGES = {
  overview: OverviewPage,
  jobs: JobsPage,
  job: JobPage,
  recurring: RecurringPage,
  queues: QueuesPage,
};

const NAVIGATION = [
  ["overview", "/", "Overview"],
  ["jobs", "/jobs", "Jobs"],
  ["recurring", "/recurring", "Recurring"],
  ["queues", "/queues", "Queues"],
];

function App() {
  const route = useRoute();
  // undefined: not known yet; null: logged out; an object: the session.
  const [session, setSession] = useState(undefined);
  const [problem, setProblem] = useState(null);
  const loggedOut = useCallback(() => setSession(null), []);
  useSessionToken(session, loggedOut);

  useEffect(() => {
    api.get("/session").then(setSession, (error) => {
      if (error instanceof ApiError && error.status === 401) setSession(null);
      else setProblem(error);
    });
  }, []);

  useEffect(() => {
    // After logging in, go where the login page was asked to send the viewer.
    if (session && route.page === "login") {
      const next = route.query.get("next") || "";
      const safe = next.startsWith(`${BASE}/`) && !next.startsWith("//");
      navigate(safe ? next : href("/"), { replace: true });
    }
  }, [session, route.page]);

  if (problem) return html`<main class="page"><${ApiOff} error=${problem} /></main>`;
  if (session === undefined) return html`<main class="page"><${Loading} /></main>`;
  if (session === null || route.page === "login") {
    return html`<${LoginPage} route=${route} onLogin=${setSession} />`;
  }
  const Page = PAGES[route.page];
  return html`
    <${Header} route=${route} session=${session} onLogout=${loggedOut} />
    <main class="page" id="main">
      ${Page ? html`<${Page} route=${route} session=${session} />` : html`<${Missing} />`}
    </main>
  `;
}

function Header({ route, session, onLogout }) {
  const logout = async () => {
    try {
      await api.post("/logout");
    } finally {
      onLogout();
      navigate(href("/login"));
    }
  };
  const current = route.page === "job" ? "jobs" : route.page;
  return html`
    <header class="top">
      <${Link} to=${href("/")} class="brand">jobworker<//>
      <nav aria-label="Sections">
        ${NAVIGATION.map(
          ([page, path, label]) => html`
            <${Link} to=${href(path)} aria-current=${current === page ? "page" : null}>
              ${label}
            <//>`,
        )}
      </nav>
      <div class="who">
        <span class="badge role" data-role=${session.role}
          title=${session.role === "admin" ? "may change jobs, queues and schedules" : "may only look"}>
          ${session.role}
        </span>
        <button type="button" class="link" onClick=${logout}>Log out</button>
      </div>
    </header>
  `;
}

function ApiOff({ error }) {
  if (error instanceof ApiError && error.status === 404) {
    return html`<section class="card">
      <h1>The admin API is off</h1>
      <p>This server has no dashboard password configured. Set
        <code>JOBWORKER_WEB_ADMIN_PASSWORD_HASH</code> (from <code>jobworker hash-password</code>)
        and restart <code>jobworker web</code>.</p>
    </section>`;
  }
  return html`<${ErrorNotice} error=${error} />`;
}

function Missing() {
  return html`<section class="card"><h1>Not found</h1>
    <p>The dashboard has no such page. <${Link} to=${href("/")}>Go to the overview<//></p>
  </section>`;
}

render(html`<${App} />`, document.getElementById("root"));
