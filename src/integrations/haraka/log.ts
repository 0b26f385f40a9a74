/**
 * Logging through Haraka's logger: every decision of the plugin goes to the plugin's own `log<level>` methods (so
 * Haraka's log shows the plugin's name and, with the message's uuid, which delivery it concerns), filtered by the
 * plugin's `loglevel` from `mta-sts.ini` on top of Haraka's global level.
 */
import type { Logger } from '../../logger.js';
import { HARAKA_LOG_LEVELS, type HarakaLogLevel } from './config.js';

/** Writes one line at a level, optionally tagged with a message uuid. */
export type HarakaLog = (level: HarakaLogLevel, message: string, uuid?: string) => void;

/** The log methods Haraka adds to a plugin object. */
type PluginLogMethods = Partial<Record<`log${HarakaLogLevel}`, (...args: unknown[]) => void>>;

const rank = (level: HarakaLogLevel): number => HARAKA_LOG_LEVELS.indexOf(level);

/** A {@link HarakaLog} writing through `plugin`'s Haraka log methods, dropping lines below `threshold()`. */
export function harakaLog(plugin: unknown, threshold: () => HarakaLogLevel): HarakaLog {
  return (level, message, uuid) => {
    if (rank(level) < rank(threshold())) return;
    const fn = (plugin as PluginLogMethods | undefined)?.[`log${level}`];
    if (typeof fn !== 'function') return;
    try {
      // A plain object with `uuid` makes Haraka's logger tag the line with the message's uuid.
      if (uuid) fn.call(plugin, message, { uuid });
      else fn.call(plugin, message);
    } catch {
      // logging must never break delivery
    }
  };
}

/** The library's {@link Logger} seam (engine, hooks, TLS-RPT) on top of a {@link HarakaLog}. */
export function libraryLogger(log: HarakaLog): Logger {
  const line = (message: string, fields?: Record<string, unknown>) => {
    if (!fields) return message;
    const parts = Object.entries(fields)
      .filter(([, v]) => v !== undefined && typeof v !== 'object')
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
    return parts.length ? `${message} ${parts.join(' ')}` : message;
  };
  return {
    debug: (m, f) => log('debug', line(m, f)),
    info: (m, f) => log('info', line(m, f)),
    warn: (m, f) => log('warn', line(m, f)),
    error: (m, f) => log('error', line(m, f)),
  };
}
