// Views re-render when the model says it changed.
import { useEffect, useState } from "preact/hooks";
import type { Observable } from "../state/observable";

export function useObservable(model: Observable | null): void {
  const [, setTick] = useState(0);
  useEffect(() => (model ? model.subscribe(() => setTick((n) => n + 1)) : undefined), [model]);
}
