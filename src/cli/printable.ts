/**
 * Input text (a line of a `mta-sts check --file` list, an argument) made safe to print on a terminal. A list may
 * hold ESC sequences, NUL, invalid UTF-8 (decoded to U+FFFD) or bidi overrides; printed raw, they would drive the
 * terminal or disguise the entry. Both forms escape the same characters as `\uXXXX` (UTF-16 code units, as JSON
 * writes them): controls (C0, DEL, C1), format characters (bidi controls, zero-width characters), line and paragraph
 * separators, private-use and unassigned code points, lone surrogates, and U+FFFD. Printable text, an IDN such as
 * `bücher.example` included, is kept as it is.
 */

/** The characters never printed raw. */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Cs}\uFFFD]/gu;

function escapeCodeUnits(ch: string): string {
  let out = '';
  for (let i = 0; i < ch.length; i++) out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`;
  return out;
}

/** `text` unquoted, for labels: unprintable characters escaped, and `\` doubled so that no escape can be faked. */
export function printable(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(UNPRINTABLE, escapeCodeUnits);
}

/** `text` as a JSON string literal in which every unprintable character is escaped (JSON leaves C1, bidi, U+FFFD raw). */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(UNPRINTABLE, escapeCodeUnits);
}
