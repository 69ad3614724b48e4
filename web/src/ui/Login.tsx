// Log in, or create an account (which then logs in).
import { useState } from "preact/hooks";
import { ApiError } from "../api/client";
import type { AuthSession } from "../auth/session";

export function Login(props: { session: AuthSession; reason: string | null; onIn(): void }) {
  const [mode, setMode] = useState<"login" | "register">("login");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mode === "register") await props.session.register(email.trim(), password, name.trim());
      else await props.session.login(email.trim(), password);
      props.onIn();
    } catch (err) {
      setError(err instanceof ApiError ? err.readable : String(err));
    } finally {
      setBusy(false);
    }
  };

  const registering = mode === "register";
  return (
    <main class="login">
      <form class="card stack" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">{registering ? "Create your account" : "Log in to chatstack"}</h1>
        {props.reason && !error && (
          <p class="info" role="status">
            {props.reason}
          </p>
        )}
        {registering && (
          <label>
            Name
            <input value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={100} autoComplete="name" />
          </label>
        )}
        <label>
          Email
          <input type="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} required autoComplete="email" />
        </label>
        <label>
          Password
          <input
            type="password"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
            required
            minLength={registering ? 10 : 1}
            autoComplete={registering ? "new-password" : "current-password"}
          />
          {registering && <span class="hint">At least 10 characters.</span>}
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {registering ? "Create account" : "Log in"}
        </button>
        <p class="switch">
          {registering ? "Have an account? " : "New here? "}
          <button
            type="button"
            class="link"
            onClick={() => {
              setMode(registering ? "login" : "register");
              setError(null);
            }}
          >
            {registering ? "Log in" : "Create an account"}
          </button>
        </p>
      </form>
    </main>
  );
}
