/**
 * Batch helpers for `mta-sts check --file`: reading a domain list and running checks with bounded concurrency,
 * delivering results in input order as soon as every earlier one is done.
 */

/**
 * Parses a domain list: one domain per line; blank lines and `#` comments are skipped; surrounding whitespace is
 * trimmed; a line may also hold several domains separated by spaces, tabs or commas. Duplicates (case-insensitive,
 * trailing dot ignored) are dropped, keeping the first.
 */
export function parseDomainList(text: string): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const rawLine of text.split(/\r?\n/)) {
    const hash = rawLine.indexOf('#');
    const line = (hash === -1 ? rawLine : rawLine.slice(0, hash)).trim();
    if (line === '') continue;
    for (const item of line.split(/[\s,]+/)) {
      if (item === '') continue;
      const key = item.toLowerCase().replace(/\.$/, '');
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(item);
    }
  }
  return out;
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
