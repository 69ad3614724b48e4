// A member's presence as a coloured dot with a text alternative.
export function PresenceDot(props: { status: "online" | "offline" | "unknown" }) {
  const label = props.status === "unknown" ? "presence unknown" : props.status;
  return <span class={`dot ${props.status}`} role="img" aria-label={label} title={label} />;
}
