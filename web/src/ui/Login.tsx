// Log in, or create an account (which then logs in).
import { useEffect, useRef, useState } from "preact/hooks";
import type { AuthSession } from "../auth/session";
import { type AuthErrors, type AuthField, authProblems, checkRegistration, PASSWORD_MAX } from "../text/authform";
import { FieldError, invalidProps } from "./FieldError";

export function Login(props: { session: AuthSession; reason: string | null; onIn(): void }) {
  const [mode, setMode] = useState<"login" | "register">("login");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [fields, setFields] = useState<AuthErrors>({});
  const [busy, setBusy] = useState(false);
  const emailInput = useRef<HTMLInputElement>(null);
  const registering = mode === "register";

  // The autofocus attribute is honoured once per page load only: a form shown after a logout
  // would start unfocused without this.
  useEffect(() => emailInput.current?.focus(), []);

  const invalid = (field: AuthField) => invalidProps("login", fields, field);
  // A problem stays until its field is edited, not after: it then describes what is no longer there.
  const edited = (field: AuthField) => {
    if (fields[field]) setFields({ ...fields, [field]: undefined });
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const early = registering ? checkRegistration(name) : {};
    setFields(early);
    if (Object.keys(early).length > 0) return;
    setBusy(true);
    try {
      if (registering) await props.session.register(email.trim(), password, name.trim());
      else await props.session.login(email.trim(), password);
      props.onIn();
    } catch (err) {
      const problems = authProblems(err, registering ? ["name", "email", "password"] : ["email", "password"]);
      setFields(problems.fields);
      setError(problems.general);
    } finally {
      setBusy(false);
    }
  };

  const fieldProblems = Object.values(fields).some(Boolean);
  return (
    <main class="login">
      <form class="card stack" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">{registering ? "Create your account" : "Log in to chatstack"}</h1>
        {props.reason && !error && !fieldProblems && (
          <p class="info" role="status">
            {props.reason}
          </p>
        )}
        {registering && (
          <>
            <label>
              Name
              <input
                value={name}
                onInput={(e) => {
                  setName(e.currentTarget.value);
                  edited("name");
                }}
                required
                maxLength={100}
                autoComplete="name"
                {...invalid("name")}
              />
            </label>
            <FieldError id="login-name" text={fields.name} />
          </>
        )}
        <label>
          Email
          <input
            ref={emailInput}
            type="email"
            value={email}
            onInput={(e) => {
              setEmail(e.currentTarget.value);
              edited("email");
            }}
            required
            autoFocus
            autoComplete="email"
            {...invalid("email")}
          />
        </label>
        <FieldError id="login-email" text={fields.email} />
        <label>
          Password
          <input
            type="password"
            value={password}
            onInput={(e) => {
              setPassword(e.currentTarget.value);
              edited("password");
            }}
            required
            minLength={registering ? 10 : 1}
            maxLength={PASSWORD_MAX}
            autoComplete={registering ? "new-password" : "current-password"}
            {...invalid("password")}
          />
          {registering && <span class="hint">At least 10 characters.</span>}
        </label>
        <FieldError id="login-password" text={fields.password} />
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
              setFields({});
            }}
          >
            {registering ? "Log in" : "Create an account"}
          </button>
        </p>
      </form>
    </main>
  );
}
