/**
 * A cursor over a string for parsers written one function per ABNF rule (RFC 5234), as the RFC 8461 §3.1 / §3.2
 * and RFC 8460 §3 parsers are. Each rule function reads from the cursor and either returns what it matched or
 * leaves the cursor where it was (`tryXxx`) or throws through {@link Cursor.fail}; nothing is split or trimmed, so
 * every character is accounted for by some rule.
 */

/** RFC 5234 WSP: space or horizontal tab. */
export function isWsp(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** RFC 5234 ALPHA / DIGIT. */
export function isAlphaDigit(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** The characters of an ext-name after the first: ALPHA / DIGIT / "_" / "-" / "." (RFC 8461 §3.1, §3.2; RFC 8460 §3). */
export function isExtNameChar(c: number): boolean {
  return isAlphaDigit(c) || c === 0x5f || c === 0x2d || c === 0x2e;
}

/** `%x21-3A / %x3C / %x3E-7E`: VCHAR except ";" and "=" (RFC 8461 §3.1 sts-ext-value, RFC 8460 §3 tlsrpt-ext-value). */
export function isTxtExtValueChar(c: number): boolean {
  return c >= 0x21 && c <= 0x7e && c !== 0x3b && c !== 0x3d;
}

/**
 * `*WSP ";" *WSP`: the field delimiter of both TXT records, RFC 8461 §3.1 `sts-field-delim` and RFC 8460 §3
 * `field-delim`. Leaves the cursor unchanged when there is no ";".
 */
export function fieldDelim(cursor: Cursor): boolean {
  return wspDelimiter(cursor, ';');
}

/** `*WSP delimiter *WSP` (`;` between fields, `,` between RFC 8460 §3 rua URIs); leaves the cursor unchanged when the delimiter is absent. */
export function wspDelimiter(cursor: Cursor, delimiter: string): boolean {
  const start = cursor.pos;
  cursor.skipWsp();
  if (!cursor.tryTake(delimiter)) {
    cursor.pos = start;
    return false;
  }
  cursor.skipWsp();
  return true;
}

/** A position in a text, and the primitives rule functions are built from. */
export class Cursor {
  pos = 0;
  constructor(
    readonly text: string,
    /** Builds the error a rule throws; the message says what was expected and where. */
    private readonly error: (message: string) => Error,
  ) {}

  get done(): boolean {
    return this.pos >= this.text.length;
  }

  /** The code unit at the cursor (NaN at the end). */
  peek(): number {
    return this.text.charCodeAt(this.pos);
  }

  /** Consumes `literal` when the text continues with it (case-sensitive, RFC 7405 %s). */
  tryTake(literal: string): boolean {
    if (!this.text.startsWith(literal, this.pos)) return false;
    this.pos += literal.length;
    return true;
  }

  /** Consumes the longest run (at most `max`) of characters that satisfy `accept`; returns it (maybe empty). */
  takeWhile(accept: (c: number) => boolean, max = Infinity): string {
    const start = this.pos;
    while (this.pos < this.text.length && this.pos - start < max && accept(this.text.charCodeAt(this.pos))) this.pos++;
    return this.text.slice(start, this.pos);
  }

  /** Like {@link Cursor.takeWhile} without building the string. */
  skipWhile(accept: (c: number) => boolean): void {
    while (this.pos < this.text.length && accept(this.text.charCodeAt(this.pos))) this.pos++;
  }

  /** `*WSP`. */
  skipWsp(): void {
    while (this.pos < this.text.length && isWsp(this.text.charCodeAt(this.pos))) this.pos++;
  }

  /** The next few characters, quoted, for error messages. */
  near(): string {
    if (this.done) return 'the end';
    const rest = this.text.slice(this.pos, this.pos + 24);
    return JSON.stringify(rest + (this.pos + 24 < this.text.length ? '…' : ''));
  }

  fail(message: string): never {
    throw this.error(message);
  }
}
