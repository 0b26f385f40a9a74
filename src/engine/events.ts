/**
 * The engine's events: a small typed emitter (`mtaSts.on(name, listener)` returns an unsubscribe function).
 * Unlike Node's EventEmitter there is no special `error` event that throws without a listener, and a listener that
 * throws is logged, never propagated into a delivery.
 */
import { MtaStsError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { StoreErrorEvent } from '../cache/tiered.js';

/** Every engine event and its payload. */
export interface MtaStsEvents {
  /**
   * A second-tier store call failed or timed out. The engine went on from its local tier (no exception, no lost
   * policy); writes that failed are replayed when the store answers again.
   */
  'store-error': StoreErrorEvent;
}

export type MtaStsEventName = keyof MtaStsEvents;
export type MtaStsListener<E extends MtaStsEventName> = (event: MtaStsEvents[E]) => void;

export class EngineEvents {
  readonly #listeners = new Map<MtaStsEventName, Set<(event: never) => void>>();

  constructor(private readonly logger: Logger) {}

  on<E extends MtaStsEventName>(name: E, listener: MtaStsListener<E>): () => void {
    if (typeof listener !== 'function') throw new MtaStsError('MTASTS_INVALID_OPTIONS', `mtaSts.on(${JSON.stringify(name)}, listener): listener must be a function`);
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(listener as (event: never) => void);
    return () => void set.delete(listener as (event: never) => void);
  }

  emit<E extends MtaStsEventName>(name: E, event: MtaStsEvents[E]): void {
    for (const listener of this.#listeners.get(name) ?? []) {
      try {
        (listener as MtaStsListener<E>)(event);
      } catch (error) {
        this.logger.warn?.(`mta-sts: a ${name} listener threw`, { error: String(error) });
      }
    }
  }
}
