// The signed-in user's account: their display name, and their password (changing it logs out
// every other device and browser). Refusals show under the field they are about.
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import type { ChatModel } from "../app/chat";
import { type AuthErrors, authProblems, checkRegistration } from "../text/authform";
import { FieldError, invalidProps } from "./FieldError";

type Section = "name" | "password";

export function AccountPanel(props: { model: ChatModel; onClose(): void }) {
  const { model } = props;
  const [name, setName] = useState(model.me.name);
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [busy, setBusy] = useState<Section | null>(null);
  // Each form's own field problems: one form's answer does not wipe the other's.
  const [fields, setFields] = useState<Record<Section, AuthErrors>>({ name: {}, password: {} });
  const [result, setResult] = useState<{ where: Section; ok: boolean; text: string } | null>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  useLayoutEffect(() => heading.current?.focus(), []);
  const shownFields: AuthErrors = { ...fields.name, ...fields.password };
  const invalid = (field: keyof AuthErrors) => invalidProps("account", shownFields, field);
  const setSection = (where: Section, problems: AuthErrors) => setFields((all) => ({ ...all, [where]: problems }));

  const outcome = (where: Section) =>
    result?.where === where && (
      <p class={result.ok ? "result ok" : "result error"} role={result.ok ? "status" : "alert"}>
        {result.text}
      </p>
    );

  // A refusal answered what was typed then: once the fields change it no longer applies (a new
  // attempt the browser stops before sending would otherwise show the old one's answer).
  const edited = (where: Section) => {
    if (result?.where === where && !result.ok) setResult(null);
  };

  const run = async (where: Section, shown: (keyof AuthErrors)[], work: () => Promise<void>, done: string) => {
    setBusy(where);
    setResult(null);
    try {
      await work();
      setSection(where, {});
      setResult({ where, ok: true, text: done });
      return true;
    } catch (err) {
      const problems = authProblems(err, shown);
      setSection(where, problems.fields);
      if (problems.general) setResult({ where, ok: false, text: problems.general });
      return false;
    } finally {
      setBusy(null);
    }
  };

  return (
    <aside class="panel account" aria-label="Your account">
      <header class="panel-head">
        <h2 ref={heading} tabIndex={-1}>
          Your account
        </h2>
        <button type="button" class="icon" aria-label="Close your account" onClick={props.onClose}>
          ✕
        </button>
      </header>
      <div class="panel-body">
        <p class="muted small">Signed in as {model.me.email}</p>
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            if (busy) return;
            const problems = checkRegistration(name);
            setSection("name", problems);
            if (problems.name) return;
            if (name.trim() === model.me.name) {
              setResult({ where: "name", ok: true, text: "Nothing to save: that is your name already." });
              return;
            }
            void run("name", ["name"], () => model.rename(name.trim()), "Name saved.");
          }}
        >
          <h3>Your name</h3>
          <label>
            Name
            <input value={name} onInput={(e) => {
                setName(e.currentTarget.value);
                edited("name");
              }} required maxLength={100} autoComplete="name" {...invalid("name")} />
          </label>
          <FieldError id="account-name" text={shownFields.name} />
          <button type="submit" disabled={busy !== null}>
            Save name
          </button>
          {outcome("name")}
        </form>
        <form
          class="stack"
          onSubmit={(e) => {
            e.preventDefault();
            if (busy) return;
            void run("password", ["current_password", "new_password"], () => model.changePassword(current, next), "Password changed. Every other device and browser was logged out.").then((ok) => {
              if (!ok) return;
              setCurrent("");
              setNext("");
            });
          }}
        >
          <h3>Change your password</h3>
          <p class="muted small">Every other device and browser signed in to this account is logged out; this one stays.</p>
          <label>
            Current password
            <input type="password" value={current} onInput={(e) => {
                setCurrent(e.currentTarget.value);
                edited("password");
              }} required autoComplete="current-password" {...invalid("current_password")} />
          </label>
          <FieldError id="account-current_password" text={shownFields.current_password} />
          <label>
            New password
            <input type="password" value={next} onInput={(e) => {
                setNext(e.currentTarget.value);
                edited("password");
              }} required minLength={10} maxLength={256} autoComplete="new-password" {...invalid("new_password")} />
          </label>
          <FieldError id="account-new_password" text={shownFields.new_password} />
          <button type="submit" disabled={busy !== null}>
            Change password
          </button>
          {outcome("password")}
        </form>
      </div>
    </aside>
  );
}
