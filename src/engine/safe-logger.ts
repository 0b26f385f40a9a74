/**
 * The logging seam made harmless: logging is best effort. A logger that throws (a closed stream, a buggy adapter)
 * must not fail a lookup, leave the cache half-updated, turn a delivered message into a failed send, or stop a
 * policy decision half-way (RFC 8461 §5: the policy decides, never a side channel).
 */
import type { Logger } from '../logger.js';

const WRAPPED = Symbol.for('mta-sts-sender.safe-logger');

/** A logger whose methods never throw (each call is guarded); wrapping twice is a no-op. */
export function safeLogger(logger: Logger): Logger {
  if ((logger as Record<symbol, unknown>)[WRAPPED] === true) return logger;
  const wrap = (level: keyof Logger): Logger[keyof Logger] => {
    const method = logger[level];
    if (typeof method !== 'function') return undefined;
    return (message, fields) => {
      try {
        method.call(logger, message, fields);
      } catch {
        // Logging is best effort.
      }
    };
  };
  return Object.freeze({ debug: wrap('debug'), info: wrap('info'), warn: wrap('warn'), error: wrap('error'), [WRAPPED]: true }) as Logger;
}
