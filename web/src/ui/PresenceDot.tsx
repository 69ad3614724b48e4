// A member's presence as a coloured dot with a text alternative.
type Status = "online" | "offline" | "unknown";

/** What a presence status is called, for labels that include it. */
export function presenceWords(status: Status): string {
  return status === "unknown" ? "presence unknown" : status;
}

export function PresenceDot(props: { status: Status }) {
  const label = presenceWords(props.status);
  return <span class={`dot ${props.status}`} role="img" aria-label={label} title={label} />;
}
