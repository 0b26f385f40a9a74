/**
 * Batch helpers for `mta-sts check --file`: reading a domain list and running checks with bounded concurrency,
 * delivering results in input order as soon as every earlier one is done.
 */

/** One entry of a domain list: the text of a line and where it came from. */
export interface DomainListEntry {
  /** The line's text (comment removed, trimmed). */
  input: string;
  /** 1-based line number. */
  line: number;
}

/**
 * Parses a domain list: **one domain per line**. Blank lines and `#` comments are skipped and surrounding whitespace
 * is trimmed; anything else on a line is that line's entry, as it is: a line such as `not a domain` is one entry (an
 * invalid name, reported as such), never three domains. Duplicates (case-insensitive, trailing dot ignored) are
 * dropped, keeping the first.
 */
export function parseDomainList(text: string): DomainListEntry[] {
  const out: DomainListEntry[] = [];
  const seen = new Set<string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const rawLine = lines[i]!;
    const hash = rawLine.indexOf('#');
    const input = (hash === -1 ? rawLine : rawLine.slice(0, hash)).trim();
    if (input === '') continue;
    const key = domainKey(input);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ input, line: i + 1 });
  }
  return out;
}

/** The key under which two spellings of a domain are the same entry (case and a trailing dot ignored). */
export function domainKey(input: string): string {
  return input.toLowerCase().replace(/\.$/, '');
}

/**
 * Runs `worker` over `items` with at most `concurrency` in flight. `onResult` is called in input order (result `i`
 * only after results `0..i-1`); `onSettled` in completion order (for a progress bar). Resolves with all results in
 * input order. `worker` must not reject (a rejection rejects the whole run).
 */
export async function mapOrdered<T, R>(
  items: readonly T[],
  concurrency: number,
  worker: (item: T, index: number) => Promise<R>,
  hooks: { onResult?: (result: R, index: number) => void; onSettled?: (result: R, index: number) => void } = {},
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  const done: boolean[] = new Array<boolean>(items.length).fill(false);
  let next = 0;
  let emitted = 0;
  const limit = Math.max(1, Math.min(concurrency, items.length));
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      const result = await worker(items[index] as T, index);
      results[index] = result;
      done[index] = true;
      hooks.onSettled?.(result, index);
      while (emitted < items.length && done[emitted]) {
        hooks.onResult?.(results[emitted] as R, emitted);
        emitted++;
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, lane));
  return results;
}
