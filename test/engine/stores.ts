/**
 * In-process second-tier stores for the engine tests: a store implementing the whole fleet contract over a shared
 * Map (two engines sharing one model two processes sharing Redis), and a switch that makes it throw or hang.
 * Entries are kept as JSON strings, as a networked store would.
 */
import type { PolicyStoreEntry, PolicyStore, StoredFetchFailure } from '../../src/cache/store.js';

/** The shared state of a fleet: what Redis would hold. */
export class FleetState {
  readonly entries = new Map<string, string>();
  readonly locks = new Map<string, { owner: number; until: number }>();
  readonly failures = new Map<string, { json: string; until: number }>();
}

export type StoreMode = 'ok' | 'throw' | 'hang';

let nextOwner = 1;

/** One member's connection to the fleet state. Counts calls per operation. */
export class FleetStore implements PolicyStore {
  mode: StoreMode = 'ok';
  readonly calls: Record<string, number> = {};
  readonly owner = nextOwner++;
  readonly #hanging = new Set<() => void>();

  constructor(readonly state: FleetState = new FleetState()) {}

  #enter(op: string): Promise<void> {
    this.calls[op] = (this.calls[op] ?? 0) + 1;
    if (this.mode === 'throw') return Promise.reject(new Error(`store down (${op})`));
    if (this.mode === 'hang') return new Promise((resolve) => this.#hanging.add(resolve)); // never settles while hanging
    return Promise.resolve();
  }

  async get(domain: string): Promise<PolicyStoreEntry | undefined> {
    await this.#enter('get');
    const raw = this.state.entries.get(domain);
    return raw === undefined ? undefined : (JSON.parse(raw) as PolicyStoreEntry);
  }
  async set(domain: string, entry: PolicyStoreEntry): Promise<void> {
    await this.#enter('set');
    this.state.entries.set(domain, JSON.stringify(entry));
  }
  async delete(domain: string): Promise<void> {
    await this.#enter('delete');
    this.state.entries.delete(domain);
  }
  async domains(): Promise<Iterable<string>> {
    await this.#enter('domains');
    return [...this.state.entries.keys()];
  }
  async tryLock(name: string, ttlMs: number): Promise<boolean> {
    await this.#enter('tryLock');
    const held = this.state.locks.get(name);
    if (held && held.until > Date.now() && held.owner !== this.owner) return false;
    this.state.locks.set(name, { owner: this.owner, until: Date.now() + ttlMs });
    return true;
  }
  async unlock(name: string): Promise<void> {
    await this.#enter('unlock');
    if (this.state.locks.get(name)?.owner === this.owner) this.state.locks.delete(name);
  }
  async getFetchFailure(domain: string): Promise<StoredFetchFailure | undefined> {
    await this.#enter('getFetchFailure');
    const f = this.state.failures.get(domain);
    return f && f.until > Date.now() ? (JSON.parse(f.json) as StoredFetchFailure) : undefined;
  }
  async setFetchFailure(domain: string, failure: StoredFetchFailure, ttlMs: number): Promise<void> {
    await this.#enter('setFetchFailure');
    this.state.failures.set(domain, { json: JSON.stringify(failure), until: Date.now() + ttlMs });
  }
}
