// A form field's problem, under the field and tied to it for screen readers.
export function FieldError(props: { id: string; text: string | undefined }) {
  if (!props.text) return null;
  return (
    <p class="error small field-error" id={props.id} role="alert">
      {props.text}
    </p>
  );
}

/** The attributes that mark a field invalid and point at its FieldError (`${prefix}-${field}`). */
export function invalidProps<F extends string>(prefix: string, errors: Partial<Record<F, string>>, field: F): Record<string, string | boolean> {
  return errors[field] ? { "aria-invalid": true, "aria-describedby": `${prefix}-${field}` } : {};
}
